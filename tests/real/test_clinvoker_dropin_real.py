"""Requests written for clinvoker, replayed as its users write them (curl-style JSON, Go
clients' zero values), against a real `clinvk serve` running the real CLIs on the double."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.support.model_double import generation_requests, user_texts
from tests.support.server import ClinvkServer

pytestmark = pytest.mark.real


@pytest.fixture(scope="module")
def server(model_double, tmp_path_factory):
    """A server of this module's own, so session listings see only these requests."""
    s = ClinvkServer(model_double.url, tmp_path_factory.mktemp("dropin")).start()
    yield s
    s.stop()


def _post(server: ClinvkServer, path: str, raw: str) -> httpx.Response:
    # Sent as the bytes a user pastes after `curl -d`, not re-encoded by a JSON library.
    return httpx.post(server.url + path, content=raw.encode(), timeout=60,
                      headers={"Content-Type": "application/json"})


def _model_calls(double) -> list[dict]:
    return generation_requests(double.requests())


# A Go client's PromptRequest struct marshalled without omitempty: every field present.
GO_STRUCT_PROMPT = """{
  "backend": "%s", "prompt": "Summarise the README", "model": "", "workdir": "",
  "approval_mode": "", "sandbox_mode": "", "output_format": "", "max_tokens": 0,
  "max_turns": 0, "system_prompt": "", "verbose": false, "dry_run": false,
  "ephemeral": false, "extra": null, "metadata": null
}"""


@pytest.mark.parametrize("backend", ["claude", "codex", "gemini"])
def test_a_go_clients_full_struct_runs_the_cli(server, model_double, backend):
    """A PromptRequest with every field at its Go zero value runs the CLI with defaults and
    answers clinvoker's response fields."""
    model_double.set(reply=f"summary from {backend}")
    r = _post(server, "/api/v1/prompt", GO_STRUCT_PROMPT % backend)
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["backend"], body["exit_code"], body["output"]) == (
        backend, 0, f"summary from {backend}"
    )
    assert isinstance(body["session_id"], str) and isinstance(body["duration_ms"], int)
    assert body["token_usage"]["output_tokens"] > 0
    assert "error" not in body
    assert any("Summarise the README" in t for c in _model_calls(model_double)
               for t in user_texts(c))


def test_dry_run_prompt_calls_no_model_and_keeps_a_session(server, model_double):
    """curl -d '{"backend":"codex","prompt":"...","dry_run":true}' shows the command, records
    a session, and the model API never hears of it."""
    r = _post(server, "/api/v1/prompt",
              '{"backend": "codex", "prompt": "refactor utils.go", "dry_run": true}')
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["output"].startswith("Would execute: ")
    assert body["output"].endswith("refactor utils.go]")
    assert "/codex [" in body["output"]
    assert body["exit_code"] == 0
    session = httpx.get(f"{server.url}/api/v1/sessions/{body['session_id']}").json()
    assert session["backend"] == "codex" and "dry-run" in session["tags"]
    assert _model_calls(model_double) == []


def test_dry_run_parallel_chain_and_compare_call_no_model(server, model_double):
    """The top-level dry_run of parallel, chain and compare covers every task, step and
    backend: answers in the shape of a real run, and no model call at all."""
    parallel = _post(server, "/api/v1/parallel", """{
      "tasks": [{"backend": "claude", "prompt": "review auth.py"},
                {"backend": "gemini", "prompt": "review db.py", "model": "gemini-2.5-flash"}],
      "max_parallel": 0, "fail_fast": false, "dry_run": true}""")
    chain = _post(server, "/api/v1/chain", """{
      "steps": [{"name": "analyze", "backend": "claude", "prompt": "analyze main.go"},
                {"name": "fix", "backend": "codex", "prompt": "fix: {{previous}}"}],
      "stop_on_failure": true, "pass_session_id": false, "persist_sessions": false,
      "pass_working_dir": false, "dry_run": true}""")
    compare = _post(server, "/api/v1/compare", """{
      "backends": ["claude", "codex", "gemini"], "prompt": "explain goroutines",
      "model": "", "workdir": "", "sequential": false, "dry_run": true}""")
    for r in (parallel, chain, compare):
        assert r.status_code == 200, r.text
    p, c, m = parallel.json(), chain.json(), compare.json()
    assert (p["total_tasks"], p["completed"], p["failed"]) == (2, 2, 0)
    assert (c["total_steps"], c["completed_steps"]) == (2, 2)
    assert c["results"][1]["output"].count("Would execute: ") == 2  # {{previous}} filled in
    assert [x["backend"] for x in m["results"]] == ["claude", "codex", "gemini"]
    outputs = [x["output"] for x in p["results"] + c["results"] + m["results"]]
    assert all(o.startswith("Would execute: ") for o in outputs)
    assert _model_calls(model_double) == []
    assert server.wait_no_cli() == []


def test_a_real_chain_and_compare_as_clinvoker_users_send_them(server, model_double):
    """A chain with clinvoker's session flags and a compare with an empty model run the real
    CLIs and answer the original's fields."""
    model_double.set(reply="done")
    chain = _post(server, "/api/v1/chain", """{
      "steps": [{"name": "draft", "backend": "gemini", "prompt": "draft a haiku",
                 "max_turns": 0, "extra": null},
                {"name": "polish", "backend": "claude", "prompt": "polish: {{previous}}",
                 "system_prompt": ""}],
      "pass_session_id": true, "persist_sessions": true}""")
    assert chain.status_code == 200, chain.text
    body = chain.json()
    assert (body["total_steps"], body["completed_steps"], body["failed_step"]) == (2, 2, 0)
    assert [(s["step"], s["name"], s["output"]) for s in body["results"]] == [
        (1, "draft", "done"), (2, "polish", "done")
    ]
    assert any("polish: done" in t for c in _model_calls(model_double) for t in user_texts(c))
    compare = _post(server, "/api/v1/compare",
                    '{"backends": ["codex", "claude"], "prompt": "one word", "model": ""}')
    assert compare.status_code == 200, compare.text
    results = compare.json()["results"]
    assert [(x["backend"], x["exit_code"], x["output"]) for x in results] == [
        ("codex", 0, "done"), ("claude", 0, "done")
    ]


def test_sessions_list_get_by_prefix_and_delete_like_clinvoker(server, model_double):
    """GET /sessions (no limit = all), GET /sessions/{prefix} and DELETE answer as clinvoker."""
    created = _post(server, "/api/v1/prompt",
                    '{"backend": "claude", "prompt": "remember me", "dry_run": true}').json()
    sid = created["session_id"]
    listing = httpx.get(server.url + "/api/v1/sessions").json()
    assert listing["total"] == len(listing["sessions"]) >= 1
    assert sid in {s["id"] for s in listing["sessions"]}
    assert httpx.get(server.url + "/api/v1/sessions?limit=0").json()["total"] == listing["total"]
    assert httpx.get(f"{server.url}/api/v1/sessions/{sid[:12]}").json()["id"] == sid
    deleted = httpx.delete(f"{server.url}/api/v1/sessions/{sid}")
    assert deleted.status_code == 200 and deleted.json() == {"deleted": True, "id": sid}
    assert httpx.get(f"{server.url}/api/v1/sessions/{sid}").status_code == 404


def test_stream_json_prompt_from_curl(server, model_double):
    """curl -N with output_format stream-json gets NDJSON events ending in done."""
    model_double.set(reply="streamed words here")
    with httpx.stream("POST", server.url + "/api/v1/prompt", timeout=60,
                      content=b'{"backend":"codex","prompt":"hi","output_format":"stream-json"}',
                      headers={"Content-Type": "application/json"}) as r:
        lines = [json.loads(line) for line in r.iter_lines() if line]
    types = [line["type"] for line in lines]
    assert types[0] == "init" and types[-1] == "done"
    assert all(line["backend"] == "codex" for line in lines)
