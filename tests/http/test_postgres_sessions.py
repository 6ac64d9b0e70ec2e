"""The HTTP server on the PostgreSQL session store: chosen by `session.store`, shown in
/health, and a database outage answered with clear 503s while ephemeral runs go on."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import msgspec
import pytest
from starlette.testclient import TestClient

from clinvk.adapters.config.yaml_config import load_config
from clinvk.adapters.http.app import create_app
from clinvk.domain.config import SessionConfig
from clinvk.entrypoints.bootstrap import bootstrap
from tests.fakes import FakeBackendRunner, FakeClock, FakeIds
from tests.support.postgres import PostgresServer


@pytest.fixture
def own_server() -> Iterator[PostgresServer]:
    """A PostgreSQL of this test's own, which it may stop and start."""
    with PostgresServer() as server:
        yield server


def _client(config, url: str, runner: FakeBackendRunner | None = None) -> TestClient:
    config = msgspec.structs.replace(config, session=SessionConfig(store=url))
    runner = runner if runner is not None else FakeBackendRunner()
    services = bootstrap(config, runner=runner, clock=FakeClock(), ids=FakeIds())
    # The server closes its store's pool at shutdown (entrypoints/server.py); so does this app.
    return TestClient(create_app(services, on_shutdown=services.store.aclose))


def test_the_store_is_chosen_by_config_and_environment(tmp_path, postgres_server) -> None:
    """CLINVK_SESSION_STORE (or session.store) with a postgresql:// URL selects the
    PostgreSQL store; /health names it and the replica."""
    url = postgres_server.new_schema()
    config = load_config(
        None,
        environ={"CLINVK_HOME": str(tmp_path), "CLINVK_SESSION_STORE": url,
                 "CLINVK_REPLICA_ID": "replica-a"},
    )
    assert config.session.store == url and config.server.replica_id == "replica-a"
    with _client(config, url) as client:
        body = client.get("/health").json()
    assert body["replica"] == "replica-a"
    store = body["session_store"]
    assert (store["kind"], store["available"], store["session_count"]) == ("postgresql", True, 0)
    assert store["latency_ms"] >= 0


def test_sessions_round_trip_through_http(config, postgres_server) -> None:
    """A turn creates a session in PostgreSQL that a second server (replica) lists, resumes
    and deletes."""
    url = postgres_server.new_schema()
    with _client(config, url) as a, _client(config, url) as b:
        first = a.post("/api/v1/prompt", json={"backend": "claude", "prompt": "one"}).json()
        sid = first["session_id"]
        page = b.get("/api/v1/sessions").json()
        assert [s["id"] for s in page["sessions"]] == [sid] and page["total"] == 1
        again = b.post(
            "/api/v1/prompt", json={"backend": "claude", "prompt": "two", "session_id": sid}
        )
        assert again.status_code == 200 and again.json()["session_id"] == sid
        assert a.get(f"/api/v1/sessions/{sid[:2]}").json()["turn_count"] == 2
        assert a.delete(f"/api/v1/sessions/{sid}").status_code == 200
        assert b.get(f"/api/v1/sessions/{sid}").status_code == 404


def test_an_outage_gives_503_keeps_ephemeral_runs_and_recovers(config, own_server) -> None:
    """PostgreSQL stopped mid-run: requests that need sessions get 503
    session_store_unavailable, /health is unhealthy, ephemeral runs still answer; when it is
    back the same server serves sessions again."""
    url = own_server.new_schema()
    with _client(config, url) as client:
        sid = client.post("/api/v1/prompt", json={"backend": "claude", "prompt": "a"}).json()[
            "session_id"
        ]
        own_server.stop()

        for response in (
            client.get("/api/v1/sessions"),
            client.get(f"/api/v1/sessions/{sid}"),
            client.post("/api/v1/prompt", json={"backend": "claude", "prompt": "b"}),
            client.post(
                "/api/v1/prompt", json={"backend": "claude", "prompt": "c", "session_id": sid}
            ),
        ):
            assert response.status_code == 503
            assert response.json()["code"] == "session_store_unavailable"
            assert "127.0.0.1" not in response.text
        health = client.get("/health")
        assert health.status_code == 503 and health.json()["status"] == "unhealthy"
        assert health.json()["session_store"] == {
            "available": False, "session_count": 0, "kind": "postgresql"
        }
        ephemeral = client.post(
            "/api/v1/prompt", json={"backend": "claude", "prompt": "d", "ephemeral": True}
        )
        assert ephemeral.status_code == 200 and ephemeral.json()["output"]

        own_server.start()
        while client.get("/health").status_code != 200:  # pytest's timeout guards this
            pass
        assert client.get(f"/api/v1/sessions/{sid}").json()["id"] == sid
        resumed = client.post(
            "/api/v1/prompt", json={"backend": "claude", "prompt": "e", "session_id": sid}
        )
        assert resumed.status_code == 200
        assert client.get("/api/v1/sessions").json()["total"] == 1


def test_postgres_killed_mid_run_is_a_clear_503_not_a_crash(config, own_server) -> None:
    """PostgreSQL killed while a turn of a session runs: that turn answers 503
    session_store_unavailable (its record cannot be saved), the server goes on serving
    ephemeral runs, and the session is usable again once the database is back."""
    runner = FakeBackendRunner()
    url = own_server.new_schema()
    with _client(config, url, runner) as client:
        sid = client.post("/api/v1/prompt", json={"backend": "claude", "prompt": "a"}).json()[
            "session_id"
        ]
        runner.reply, runner.delay = "one two three four five six", 0.2
        answers: list = []
        turn = threading.Thread(target=lambda: answers.append(client.post(
            "/api/v1/prompt", json={"backend": "claude", "prompt": "b", "session_id": sid}
        )))
        turn.start()
        while runner.live == 0:  # the turn's CLI is running; pytest's timeout guards this
            time.sleep(0.01)
        own_server.stop()
        turn.join()
        assert answers[0].status_code == 503, answers[0].text
        assert answers[0].json()["code"] == "session_store_unavailable"
        runner.delay = 0
        ephemeral = client.post(
            "/api/v1/prompt", json={"backend": "claude", "prompt": "c", "ephemeral": True}
        )
        assert ephemeral.status_code == 200
        own_server.start()
        while client.get("/health").status_code != 200:
            time.sleep(0.1)
        again = client.post(
            "/api/v1/prompt", json={"backend": "claude", "prompt": "d", "session_id": sid}
        )
        assert again.status_code == 200, again.text
        assert client.get(f"/api/v1/sessions/{sid}").json()["turn_count"] == 2


def test_eight_clients_on_each_of_two_replicas_race_on_one_session(config, postgres_server):
    """8 clients on each of two servers sharing PostgreSQL send turns of one session at once:
    each turn either runs (200) or is refused as session_busy (409), never anything else, and
    the session counts exactly the turns that ran."""
    url = postgres_server.new_schema()
    runners = [FakeBackendRunner(), FakeBackendRunner()]
    with _client(config, url, runners[0]) as a, _client(config, url, runners[1]) as b:
        sid = a.post("/api/v1/prompt", json={"backend": "claude", "prompt": "0"}).json()[
            "session_id"
        ]
        for runner in runners:
            runner.reply, runner.delay = "one two three", 0.01
        statuses: list[int] = []
        lock = threading.Lock()

        def client(server: TestClient) -> None:
            for i in range(4):
                r = server.post(
                    "/api/v1/prompt",
                    json={"backend": "claude", "prompt": str(i), "session_id": sid},
                )
                if r.status_code == 409:
                    assert r.json()["code"] == "session_busy"
                with lock:
                    statuses.append(r.status_code)

        threads = [threading.Thread(target=client, args=(server,))
                   for server in (a, b) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(statuses) == 64 and set(statuses) <= {200, 409}
        ran = statuses.count(200)
        assert ran >= 1
        session = b.get(f"/api/v1/sessions/{sid}").json()
        assert session["turn_count"] == 1 + ran and session["status"] == "active"
