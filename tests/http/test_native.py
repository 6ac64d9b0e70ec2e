"""The native REST dialect, in-process."""

from __future__ import annotations

import json

import pytest


def test_prompt_returns_the_contract_fields(client):
    """POST /api/v1/prompt answers with the contract's fields and the session header."""
    r = client.post("/api/v1/prompt", json={"backend": "claude", "prompt": "hi"})
    assert r.status_code == 200
    body = r.json()
    assert {"session_id", "backend", "exit_code", "duration_ms", "output", "token_usage"} <= set(body)
    assert body["token_usage"] == {
        "input_tokens": 3, "output_tokens": 3, "cached_tokens": 0, "reasoning_tokens": 0
    }
    assert r.headers["x-clinvk-session-id"] == body["session_id"]


def test_stream_json_is_ndjson_events(client):
    """output_format stream-json yields one JSON event per line, init first and done last."""
    with client.stream(
        "POST", "/api/v1/prompt",
        json={"backend": "codex", "prompt": "hi", "output_format": "stream-json"},
    ) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("application/x-ndjson")
        lines = [json.loads(line) for line in r.iter_lines() if line]
    types = [line["type"] for line in lines]
    assert types[0] == "init" and types[-1] == "done"
    assert "".join(l["content"]["text"] for l in lines if l["type"] == "delta") == "hello from fake"
    assert all(l["backend"] == "codex" and l["session_id"] for l in lines)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"prompt": "x"}, "backend"),
        ({"backend": "claude"}, "prompt"),
        ({"backend": 3, "prompt": "x"}, "backend"),
        ({"backend": "claude", "prompt": "x", "bogus": 1}, "bogus"),
        ({"backend": "nope", "prompt": "x"}, "backend"),
        ({"backend": "claude", "prompt": "x", "max_turns": -1}, "max_turns"),
        ({"backend": "claude", "prompt": "", "model": ""}, "prompt"),
        ({"backend": "claude", "prompt": "x", "approval_mode": "yes"}, "approval_mode"),
    ],
)
def test_bad_input_is_400_naming_the_field(client, body, field):
    """Missing, mistyped, unknown fields and unknown backends give 400 naming the field."""
    r = client.post("/api/v1/prompt", json=body)
    assert r.status_code == 400, r.text
    problem = r.json()
    assert problem["status"] == 400 and problem["field"] == field
    assert problem["errors"] == [{"message": problem["detail"], "location": f"body.{field}"}]
    assert r.headers["content-type"].startswith("application/problem+json")


def test_invalid_json_is_400(client):
    """A body that is not JSON is a 400, never a 500."""
    r = client.post("/api/v1/prompt", content=b"{not json",
                    headers={"content-type": "application/json"})
    assert r.status_code == 400
    assert r.json()["code"] == "invalid_request"


def test_backend_failure_is_502_with_the_cli_message(client, runner):
    """A failing CLI gives 502 carrying its own message."""
    runner.fail = "API Error: 500 injected 500"
    r = client.post("/api/v1/prompt", json={"backend": "claude", "prompt": "hi"})
    assert r.status_code == 502
    assert "injected 500" in r.json()["detail"]
    assert r.json()["error"] == r.json()["detail"]


def test_unavailable_backend_is_503(client, runner):
    """A backend whose CLI is missing gives 503."""
    runner.unavailable.add("gemini")
    r = client.post("/api/v1/prompt", json={"backend": "gemini", "prompt": "hi"})
    assert r.status_code == 503
    assert r.json()["code"] == "backend_unavailable"


def test_sessions_list_get_delete(client):
    """Sessions can be listed with filters, fetched and deleted; unknown ids are 404."""
    a = client.post("/api/v1/prompt", json={"backend": "claude", "prompt": "a"}).json()
    client.post("/api/v1/prompt", json={"backend": "codex", "prompt": "b"})
    page = client.get("/api/v1/sessions", params={"backend": "claude"}).json()
    assert page["total"] == 1 and page["sessions"][0]["id"] == a["session_id"]
    assert page["sessions"][0]["initial_prompt"] == "a"
    assert client.get(f"/api/v1/sessions/{a['session_id']}").json()["backend"] == "claude"
    assert client.delete(f"/api/v1/sessions/{a['session_id']}").status_code == 200
    assert client.get(f"/api/v1/sessions/{a['session_id']}").status_code == 404
    assert client.delete(f"/api/v1/sessions/{a['session_id']}").status_code == 404
    assert client.get("/api/v1/sessions", params={"limit": "x"}).status_code == 400
    assert client.get("/api/v1/sessions", params={"status": "weird"}).status_code == 400


def test_resume_with_unknown_session_is_404(client):
    """Continuing a session that does not exist is a 404."""
    r = client.post("/api/v1/prompt",
                    json={"backend": "claude", "prompt": "x", "session_id": "missing"})
    assert r.status_code == 404


def test_backends_and_health(client, runner):
    """Backends list availability; health is degraded when one is missing."""
    assert client.get("/api/v1/backends").json()["backends"][0] == {
        "name": "claude", "available": True
    }
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["session_store"]["available"] is True
    runner.unavailable.add("codex")
    assert client.get("/health").json()["status"] == "degraded"


def test_unknown_route_is_404_json(client):
    """Unknown routes answer 404 in JSON."""
    r = client.get("/api/v1/nothing")
    assert r.status_code == 404
    assert r.json()["status"] == 404


def test_overload_is_429_with_retry_after(runner, tmp_path):
    """When no CLI slot frees in time the answer is 429 with Retry-After, as problem+json."""
    import time

    from starlette.testclient import TestClient

    from clinvk.adapters.http.app import create_app
    from clinvk.domain.config import Config, ServerConfig
    from clinvk.domain.models import PromptRequest
    from clinvk.entrypoints.bootstrap import bootstrap
    from tests.fakes import FakeClock, FakeIds, FakeSessionStore

    config = Config(server=ServerConfig(default_workdir=str(tmp_path), max_concurrent_runs=1,
                                        queue_max_length=0, queue_max_wait_secs=1))
    services = bootstrap(config, runner=runner, store=FakeSessionStore(), clock=FakeClock(),
                         ids=FakeIds())
    runner.hang = True
    busy = PromptRequest(backend="claude", prompt="x", ephemeral=True)
    with TestClient(create_app(services)) as client:
        holder = client.portal.start_task_soon(services.prompt.run, busy)
        deadline = time.monotonic() + 30  # a hang guard: the run takes the slot at once
        while not runner.live:
            assert time.monotonic() < deadline, "the first run never took the slot"
            time.sleep(0.01)
        r = client.post("/api/v1/prompt", json={"backend": "claude", "prompt": "hi"})
        holder.cancel()
    assert r.status_code == 429, r.text
    assert int(r.headers["retry-after"]) >= 1
    assert r.json()["code"] == "overloaded"


def test_quiet_stream_gets_heartbeat_lines(services, runner):
    """While the CLI is silent, an NDJSON stream carries heartbeat lines (heartbeat_secs 0.2)."""
    from starlette.testclient import TestClient

    from clinvk.adapters.http.app import create_app
    from tests.fakes import AppSpy

    app = AppSpy(create_app(services))
    runner.reply = "slow words"
    runner.hold = app.when_sent(b'"heartbeat"')  # the CLI says nothing until a heartbeat went
    with TestClient(app) as client, client.stream(
        "POST", "/api/v1/prompt",
        json={"backend": "claude", "prompt": "hi", "output_format": "stream-json"},
    ) as r:
        types = [json.loads(line)["type"] for line in r.iter_lines() if line]
    assert "heartbeat" in types
    assert types[0] == "init" and types[-1] == "done"
    assert types.index("heartbeat") < types.index("delta")
