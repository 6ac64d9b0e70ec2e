"""Portable CLI sessions through two real `clinvk serve` replicas: separate CLI homes, one
PostgreSQL. Turn 1 runs on replica A, turn 2 on replica B, whose CLI never saw turn 1: the
CLI's own session files came with the session, so turn 2 carries turn 1's history."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.model_double import assistant_texts, generation_requests, user_texts
from tests.support.server import ClinvkServer

pytestmark = pytest.mark.real

BACKENDS = ["claude", "codex", "gemini"]


@pytest.fixture
def replicas(model_double, postgres_server, tmp_path: Path) -> Iterator[list[ClinvkServer]]:
    """Two servers on one PostgreSQL schema, each with its own CLI homes, one workdir path."""
    url = postgres_server.new_schema()
    work = tmp_path / "work"
    work.mkdir()
    servers = []
    try:
        for name in ("a", "b"):
            scratch = tmp_path / name
            scratch.mkdir()
            server = ClinvkServer(
                model_double.url, scratch, default_workdir=str(work),
                env={"CLINVK_SESSION_STORE": url, "CLINVK_REPLICA_ID": name},
            )
            servers.append(server.start())
        yield servers
    finally:
        for server in servers:
            server.stop()


def _prompt(server: ClinvkServer, **body) -> httpx.Response:
    return httpx.post(server.url + "/api/v1/prompt", json=body, timeout=120)


@pytest.mark.parametrize("backend", BACKENDS)
def test_turn_two_on_another_replica_carries_turn_one(replicas, model_double, backend):
    """A session begun on replica A continues on replica B with its history: B restored the
    CLI's session file that A captured into the shared store."""
    a, b = replicas
    assert httpx.get(a.url + "/health").json()["replica"] == "a"
    model_double.set(reply="Hello Zed")
    first = _prompt(a, backend=backend, prompt="My name is Zed. Remember it.")
    assert first.status_code == 200, first.text
    sid = first.json()["session_id"]
    model_double.clear_log()
    model_double.set(reply="Your name is Zed")
    second = _prompt(b, backend=backend, prompt="What is my name?", session_id=sid)
    assert second.status_code == 200, second.text
    calls = generation_requests(model_double.requests())
    assert calls, "replica B's CLI never called the model double"
    users = user_texts(calls[-1])
    assert any("My name is Zed. Remember it." in t for t in users)
    assert any("What is my name?" in t for t in users)
    assert any("Hello Zed" in t for t in assistant_texts(calls[-1]))
    session = httpx.get(f"{a.url}/api/v1/sessions/{sid}").json()
    assert session["turn_count"] == 2


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_wiped_cli_session_file_is_restored_from_the_file_store(
    model_double, tmp_path: Path, backend
):
    """With the file store, the copy kept beside the sessions brings back a CLI session file
    that was deleted from the CLI's home between turns: turn 2 still carries turn 1."""
    server = ClinvkServer(model_double.url, tmp_path).start()
    try:
        model_double.set(reply="Hello Zed")
        first = _prompt(server, backend=backend, prompt="My name is Zed. Remember it.")
        assert first.status_code == 200, first.text
        sid = first.json()["session_id"]
        cli_id = httpx.get(f"{server.url}/api/v1/sessions/{sid}").json()["backend_session_id"]
        wiped = [
            path for path in (tmp_path / "clis").rglob("*.jsonl")
            if cli_id in path.name or cli_id[:8] in path.name
        ]
        assert wiped, "the CLI wrote no session file named after its session"
        for path in wiped:
            path.unlink()
        model_double.clear_log()
        model_double.set(reply="Your name is Zed")
        second = _prompt(server, backend=backend, prompt="What is my name?", session_id=sid)
        assert second.status_code == 200, second.text
        users = user_texts(generation_requests(model_double.requests())[-1])
        assert any("My name is Zed. Remember it." in t for t in users)
        assert all(path.exists() for path in wiped)
    finally:
        server.stop()
