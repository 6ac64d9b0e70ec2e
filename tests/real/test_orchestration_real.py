"""parallel, chain and compare through a real `clinvk serve`, the real CLIs and the model double.

The double's knobs apply to every backend at once. A per-backend failure comes from gemini
itself: with a model name holding a `/` its request path matches no route of the double,
which answers 404 (knobs do not apply), so gemini fails while the other CLIs are served
normally. Order between the CLIs comes from the double's holds, never from timing.
"""

from __future__ import annotations

import httpx
import pytest

from tests.support.model_double import generation_requests, user_texts

pytestmark = pytest.mark.real

BACKENDS = ["claude", "codex", "gemini"]
API_OF = {"claude": "anthropic", "codex": "openai", "gemini": "gemini"}
#: A model gemini sends to a path the double has no route for: a quick, per-backend failure.
GEMINI_BROKEN_MODEL = "broken/model"


def _post(server, path: str, body: dict, timeout: float = 60) -> httpx.Response:
    return httpx.post(server.url + path, json=body, timeout=timeout)


def _calls(double, api: str) -> list[dict]:
    return [r for r in generation_requests(double.requests()) if r["api"] == api]


def test_parallel_runs_all_three_clis_at_once(clinvk_server, model_double):
    """A parallel request runs claude, codex and gemini side by side; each answers in order
    with the double's text and the model saw each task's own prompt."""
    model_double.set(reply="parallel answer")
    # No model call is answered before all three CLIs have called the model: run one after
    # another, the first CLI would wait for the others forever. So an answer at all proves
    # the three runs overlapped, however slowly each of them starts.
    model_double.hold_until(*API_OF.values())
    tasks = [{"backend": b, "prompt": f"Task for {b}"} for b in BACKENDS]
    r = _post(clinvk_server, "/api/v1/parallel", {"tasks": tasks})
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["total_tasks"], body["completed"], body["failed"]) == (3, 3, 0), body
    assert [t["backend"] for t in body["results"]] == BACKENDS
    assert all(t["output"] == "parallel answer" for t in body["results"])
    for backend in BACKENDS:
        calls = _calls(model_double, API_OF[backend])
        assert any(f"Task for {backend}" in t for c in calls for t in user_texts(c)), backend
    assert clinvk_server.wait_no_cli() == []


def test_chain_claude_codex_gemini_carries_earlier_outputs(clinvk_server, model_double):
    """A 3-step chain claude → codex → gemini sends each later step the earlier outputs
    (`{{previous}}` and `{{steps.NAME}}`), as the double's request log shows."""
    model_double.reply_for(anthropic="from-claude", openai="from-codex", gemini="from-gemini")
    r = _post(clinvk_server, "/api/v1/chain", {"steps": [
        {"name": "write", "backend": "claude", "prompt": "Write a haiku."},
        {"name": "review", "backend": "codex", "prompt": "Review this: {{previous}}"},
        {"backend": "gemini",
         "prompt": "Original <{{steps.write}}>, review <{{previous}}>. Summarise."},
    ]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["total_steps"], body["completed_steps"], body["failed_step"]) == (3, 3, 0), body
    assert [s["output"] for s in body["results"]] == ["from-claude", "from-codex", "from-gemini"]
    codex_seen = [t for c in _calls(model_double, "openai") for t in user_texts(c)]
    gemini_seen = [t for c in _calls(model_double, "gemini") for t in user_texts(c)]
    assert any("Review this: from-claude" in t for t in codex_seen), codex_seen
    assert any("Original <from-claude>, review <from-codex>. Summarise." in t
               for t in gemini_seen), gemini_seen


def test_compare_reports_each_backends_own_model(clinvk_server, model_double):
    """Compare answers for all three CLIs, each with the model its CLI reported using (codex
    reports none in its JSON output, so its model is only known when one was asked for)."""
    model_double.set(reply="compared")
    r = _post(clinvk_server, "/api/v1/compare", {"prompt": "Compare me", "backends": BACKENDS})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["backends"] == BACKENDS and body["completed"] == 3, body
    by_backend = {e["backend"]: e for e in body["results"]}
    for backend in BACKENDS:
        entry = by_backend[backend]
        assert (entry["status"], entry["exit_code"], entry["output"]) == (
            "completed", 0, "compared"
        ), entry
    assert by_backend["gemini"]["model"] == "gemini-2.5-flash"
    # The double echoes the model each CLI asked for; that is what claude reports back.
    claude_asked = _calls(model_double, "anthropic")[0]["body"]["model"]
    assert by_backend["claude"]["model"] and by_backend["claude"]["model"].startswith(
        claude_asked.split("[")[0]
    ), (by_backend["claude"], claude_asked)
    codex_asked = _calls(model_double, "openai")[0]["body"]["model"]
    assert by_backend["codex"].get("model") in (None, codex_asked)  # absent when unknown


def test_fail_fast_stops_the_slow_cli_when_another_fails(clinvk_server, model_double):
    """With fail_fast, gemini failing ends the claude run still answering: the answer marks
    it cancelled and no CLI process is left."""
    # claude's answer never ends by itself (one piece, then the double holds the rest), and
    # gemini's failing call is only answered once claude's call is in: claude is certainly
    # mid-answer when gemini fails, and only fail_fast can end it before the deadline.
    model_double.hold_after(1)
    model_double.hold_until("anthropic", unrouted=True)
    r = _post(clinvk_server, "/api/v1/parallel", {"fail_fast": True, "tasks": [
        {"backend": "claude", "prompt": "Take your time."},
        {"backend": "gemini", "prompt": "Fail, please.", "model": GEMINI_BROKEN_MODEL},
    ]})
    assert r.status_code == 200, r.text
    claude, gemini = r.json()["results"]
    assert (gemini["status"], gemini["error_code"]) == ("failed", "backend_failed"), gemini
    assert claude["status"] == "cancelled", claude
    assert "task 1 failed" in claude["error"]
    assert _calls(model_double, "anthropic"), "claude should have been mid-answer"
    assert clinvk_server.wait_no_cli() == []


def test_dropped_parallel_stream_kills_every_cli(clinvk_server, model_double):
    """A client that drops a streamed parallel request mid-answer leaves no CLI behind."""
    model_double.hold_after(1)  # the answers never end by themselves: only a kill ends a CLI
    tasks = [{"backend": b, "prompt": "long"} for b in ("claude", "codex")]
    with httpx.stream("POST", clinvk_server.url + "/api/v1/parallel", timeout=60,
                      json={"tasks": tasks, "stream": True}) as r:
        assert r.status_code == 200
        for _ in r.iter_lines():  # heartbeats keep lines coming while the CLIs are held
            if {"anthropic", "openai"} <= {c["api"] for c in
                                           generation_requests(model_double.requests())}:
                break  # both CLIs are mid-answer
        assert clinvk_server.cli_pids(), "the CLIs should be running mid-stream"
    assert clinvk_server.wait_no_cli() == []
