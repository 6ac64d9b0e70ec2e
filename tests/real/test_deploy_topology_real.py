"""The deployment recipe end to end, without a container engine: deploy/compose.yaml's
topology started from the recipe's own settings — PostgreSQL with the db service's user,
password and database (checked by its healthcheck command), two `clinvk serve` replicas with
the environment compose gives them (its interpolation done here, the store URL's `db:5432`
pointed at the test server), separate homes and one shared working directory as its volumes
say, and a real Caddy running deploy/Caddyfile itself (only its placeholders set: loopback
upstreams for the service names, free ports). The real openai SDK talks TLS to Caddy,
verified against Caddy's own CA.

What stays untested here: the image build and compose's own networking and restarts.
"""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import openai
import psycopg
import pytest
from psycopg import sql

from tests.support.deploy import (
    Caddy,
    caddyfile_default,
    compose_services,
    dockerfile_command,
)
from tests.support.model_double import generation_requests, user_texts
from tests.support.postgres import PostgresServer
from tests.support.server import ClinvkServer

pytestmark = pytest.mark.real

#: What an operator exports before `docker compose up` (compose refuses to start without).
OPERATOR_ENV = {"CLINVK_DB_PASSWORD": "db-Secret-42", "CLINVK_API_KEYS": "team-key-1"}
CHAT_PATH = "/openai/v1/chat/completions"


class Topology:
    def __init__(self, db: PostgresServer, replicas: list[ClinvkServer], proxy: Caddy) -> None:
        self.db, self.replicas, self.proxy = db, replicas, proxy


@pytest.fixture
def topology(model_double, tmp_path: Path) -> Iterator[Topology]:
    """The recipe's services, each started the way compose.yaml says (see the module doc)."""
    services = compose_services()
    db_service = services["db"]
    replica_services = [s for s in services.values() if "build" in s.raw]
    assert [s.name for s in replica_services] == ["clinvk-a", "clinvk-b"]

    # The replicas listen where the image's command says, and Caddy sends to those names.
    command = dockerfile_command()
    port = command[command.index("--port") + 1]
    upstreams = caddyfile_default("CLINVK_PROXY_UPSTREAMS").split()
    assert upstreams == [f"{s.name}:{port}" for s in replica_services]
    https_port = caddyfile_default("CLINVK_PROXY_HTTPS_PORT")
    assert f"{https_port}:{https_port}" in services["proxy"].raw["ports"]

    # Each replica a home of its own, the working directories one volume at one path.
    mounts = [s.volumes() for s in replica_services]
    shared = {path for path in mounts[0] if mounts[1].get(path) == mounts[0][path]}
    assert len(shared) == 1 and len(mounts[0]) == len(mounts[1]) == 2
    assert all(r.raw["depends_on"]["db"]["condition"] == "service_healthy"
               for r in replica_services)

    db_env = db_service.environment(OPERATOR_ENV)
    db = PostgresServer(user=db_env["POSTGRES_USER"], password=db_env["POSTGRES_PASSWORD"])
    replicas: list[ClinvkServer] = []
    proxy: Caddy | None = None
    try:
        db.start()
        with psycopg.connect(db.url(), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(
                sql.Identifier(db_env["POSTGRES_DB"])))
        healthcheck = db_service.raw["healthcheck"]["test"]
        assert healthcheck[0] == "CMD"
        subprocess.run([str(db.bin / healthcheck[1]), *healthcheck[2:], "-h", "127.0.0.1",
                        "-p", str(db.port)], check=True, capture_output=True)

        work = tmp_path / "work"
        work.mkdir()
        for service in replica_services:
            env = service.environment(OPERATOR_ENV)
            store = urlsplit(env["CLINVK_SESSION_STORE"])
            assert (store.hostname, store.port) == ("db", 5432)
            assert store.password == OPERATOR_ENV["CLINVK_DB_PASSWORD"]
            assert store.path == "/" + db_env["POSTGRES_DB"]
            env["CLINVK_SESSION_STORE"] = urlunsplit(store._replace(
                netloc=f"{store.username}:{store.password}@127.0.0.1:{db.port}"))
            scratch = tmp_path / service.name
            scratch.mkdir()
            replicas.append(ClinvkServer(model_double.url, scratch, env=env,
                                         default_workdir=str(work)).start())
        proxy = Caddy(tmp_path / "caddy",
                      upstreams=[f"127.0.0.1:{r.port}" for r in replicas]).start()
        yield Topology(db, replicas, proxy)
    finally:
        if proxy is not None:
            proxy.stop()
        for server in replicas:
            server.stop()
        db.close()


def _served(server: ClinvkServer) -> int:
    """Chat completions this replica answered (its request log, one line per request)."""
    return server.log_path.read_text().count(f'"path": "{CHAT_PATH}"')


def _settled(servers: list[ClinvkServer], total: int) -> list[int]:
    """Each server's count once they add up to `total` (a request's log line is written
    just after its answer went out, so the last one may still be on its way)."""
    while sum(counts := [_served(s) for s in servers]) < total:  # pytest's timeout guards
        time.sleep(0.05)
    return counts


def _sessions(url: str, **client: object) -> list[dict]:
    headers = {"Authorization": f"Bearer {OPERATOR_ENV['CLINVK_API_KEYS']}"}
    response = httpx.get(url + "/api/v1/sessions", headers=headers, **client)  # type: ignore[arg-type]
    assert response.status_code == 200, response.text
    return response.json()["sessions"]


@pytest.fixture
def client(topology: Topology) -> Iterator[openai.OpenAI]:
    """The openai SDK on the proxy's URL, trusting only Caddy's CA, retrying nothing itself
    (so every failover seen is the proxy's)."""
    with httpx.Client(verify=topology.proxy.ssl_context(), timeout=120) as http:
        yield openai.OpenAI(base_url=topology.proxy.url + "/openai/v1",
                            api_key=OPERATOR_ENV["CLINVK_API_KEYS"], http_client=http,
                            max_retries=0)


def test_a_session_moves_between_replicas_behind_the_proxy(
    topology: Topology, client: openai.OpenAI, model_double
) -> None:
    """Through Caddy (TLS, round robin) a session's turns land on both replicas and each
    carries the earlier ones; either replica lists the same sessions; when the replica
    running a turn is killed, the session goes on on the other."""
    a, b = topology.replicas
    proxy = topology.proxy
    first = "My name is Zed. Remember it."

    def turn(text: str, reply: str, session_id: str | None = None) -> str:
        model_double.set(reply=reply)
        extra = {"clinvk": {"session_id": session_id}} if session_id else None
        raw = client.chat.completions.with_raw_response.create(
            model="claude", messages=[{"role": "user", "content": text}], extra_body=extra)
        assert raw.parse().choices[0].message.content == reply
        users = user_texts(generation_requests(model_double.requests())[-1])
        assert any(first in t for t in users) and any(text in t for t in users)
        return raw.headers["x-clinvk-session-id"]

    sid = turn(first, "Hello Zed")
    for n in (2, 3):
        turn(f"Turn {n}.", f"Noted {n}", sid)
    assert 0 not in _settled([a, b], 3), "round robin sent every turn to one replica"
    listed = _sessions(a.url)
    assert [(s["id"], s["turn_count"]) for s in listed] == [(sid, 3)]
    assert _sessions(b.url) == listed
    assert _sessions(proxy.url, verify=proxy.ssl_context()) == listed

    # Turn 4's answer never ends by itself; the replica whose CLI runs it is killed.
    model_double.hold_after(1)
    calls = len(generation_requests(model_double.requests()))
    failed: list[BaseException] = []

    def held_turn() -> None:
        try:
            client.chat.completions.create(
                model="claude", messages=[{"role": "user", "content": "Turn 4."}],
                extra_body={"clinvk": {"session_id": sid}})
        except openai.APIError as exc:
            failed.append(exc)

    thread = threading.Thread(target=held_turn)
    thread.start()
    while True:  # pytest's timeout guards this
        running = [r for r in (a, b) if r.cli_pids()]
        if running and len(generation_requests(model_double.requests())) > calls:
            break
        time.sleep(0.05)
    [victim] = running
    survivor = b if victim is a else a
    assert victim.stop(signal.SIGKILL) == -signal.SIGKILL
    model_double.release()
    thread.join()
    assert failed, "the turn on the killed replica did not fail"

    before = _served(survivor)
    turn("What is my name?", "Your name is Zed", sid)
    turn("Turn 6.", "Noted 6", sid)
    assert _settled([survivor], before + 2) == [before + 2]
    listed = _sessions(proxy.url, verify=proxy.ssl_context())
    assert [(s["id"], s["turn_count"]) for s in listed] == [(sid, 5)]
