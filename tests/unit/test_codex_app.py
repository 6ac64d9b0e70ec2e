"""codex app-server turns: the protocol clinvk writes and the lines it reads (recorded from
codex 0.169.0 against the model double, trimmed to the fields that matter)."""

from __future__ import annotations

import json

import msgspec
import pytest

from clinvk.adapters.backends.codex_app import CodexAppDecoder, app_server_argv
from clinvk.domain.errors import BackendFailed
from clinvk.domain.events import Init, Message, TextDelta, Usage
from clinvk.domain.models import RunSpec

THREAD = "01a22dec-a042-75a1-9202-51b676a1917a"
TURN = [
    {"id": 1, "result": {"userAgent": "clinvk/0.169.0", "platformOs": "linux"}},
    {"method": "configWarning", "params": {"summary": "Codex could not find bubblewrap"}},
    {"id": 2, "result": {"thread": {"id": THREAD, "status": {"type": "idle"}},
                         "model": "gpt-6.1-sol", "sandbox": {"type": "readOnly"}}},
    {"method": "thread/started", "params": {"thread": {"id": THREAD}}},
    {"id": 3, "result": {"turn": {"id": "t1", "status": "inProgress"}}},
    {"method": "turn/started", "params": {"threadId": THREAD, "turn": {"id": "t1"}}},
    {"method": "item/started", "params": {"item": {"type": "userMessage", "id": "u1"}}},
    {"method": "item/started", "params": {"item": {"type": "agentMessage", "id": "m1", "text": ""}}},
    {"method": "item/agentMessage/delta", "params": {"itemId": "m1", "delta": "first"}},
    {"method": "item/agentMessage/delta", "params": {"itemId": "m1", "delta": " answer"}},
    {"method": "item/completed",
     "params": {"item": {"type": "agentMessage", "id": "m1", "text": "first answer"}}},
    {"method": "thread/tokenUsage/updated", "params": {"tokenUsage": {
        "total": {"inputTokens": 14, "outputTokens": 4, "cachedInputTokens": 0},
        "last": {"inputTokens": 7, "outputTokens": 2, "cachedInputTokens": 0}}}},
    {"method": "turn/completed",
     "params": {"threadId": THREAD, "turn": {"id": "t1", "status": "completed", "error": None}}},
]
FAILED = [
    {"id": 11, "result": {"turn": {"id": "t2", "status": "inProgress"}}},
    {"method": "error", "params": {"error": {
        "message": "We’re currently experiencing high demand, which may cause temporary errors.",
        "codexErrorInfo": "internalServerError"}, "willRetry": False}},
    {"method": "turn/completed", "params": {"turn": {"id": "t2", "status": "failed", "error": {
        "message": "We’re currently experiencing high demand, which may cause temporary errors."}}}},
]


def _spec(**kw) -> RunSpec:
    return RunSpec(backend="codex", prompt="The secret word is PELICAN.", workdir="/w", **kw)


def _lines(records) -> list[bytes]:
    return [json.dumps(r).encode() for r in records]


def _requests(data: bytes) -> list[dict]:
    return [json.loads(line) for line in data.splitlines() if line.strip()]


def test_a_first_turn_opens_the_protocol_then_starts_the_turn_on_the_new_thread():
    """A fresh app server gets initialize, initialized and thread/start; once the thread
    answers, turn/start with the prompt follows; text streams as deltas; the turn ends."""
    decoder = CodexAppDecoder(_spec(model="gpt-x", sandbox_mode="workspace"))
    opening = _requests(decoder.opening(first=True))
    assert [r["method"] for r in opening] == ["initialize", "initialized", "thread/start"]
    assert opening[2]["params"] == {
        "cwd": "/w", "approvalPolicy": "never", "model": "gpt-x", "sandbox": "workspace-write"
    }
    events, written = [], []
    for line in _lines(TURN):
        events += decoder.feed(line)
        written += _requests(decoder.replies())
        assert not decoder.turn_done or line == _lines(TURN)[-1]
    assert [w["method"] for w in written] == ["turn/start"]
    assert written[0]["params"]["threadId"] == THREAD
    assert written[0]["params"]["input"] == [{"type": "text", "text": "The secret word is PELICAN."}]
    assert isinstance(events[0], Init) and events[0].backend_session_id == THREAD
    assert [e.text for e in events if isinstance(e, TextDelta)] == ["first", " answer"]
    assert [e.text for e in events if isinstance(e, Message)] == ["first answer"]
    assert isinstance(events[-1], Usage)
    assert decoder.turn_done
    result = decoder.finish(exit_code=0, stderr="", duration_ms=5)
    assert result.output == "first answer" and result.backend_session_id == THREAD
    assert (result.usage.input_tokens, result.usage.output_tokens) == (7, 2)  # this turn only
    assert not result.usage_is_cumulative


def test_a_later_turn_is_one_turn_start_and_a_resumed_thread_is_reopened():
    """On a process that already serves the thread, a turn is just turn/start; a fresh
    process for an existing session resumes its thread first."""
    later = CodexAppDecoder(_spec(resume_id=THREAD, effort="high"))
    (turn,) = _requests(later.opening(first=False))
    assert turn["method"] == "turn/start"
    assert turn["params"]["threadId"] == THREAD and turn["params"]["effort"] == "high"
    reopened = _requests(CodexAppDecoder(_spec(resume_id=THREAD)).opening(first=True))
    assert reopened[2]["method"] == "thread/resume"
    assert reopened[2]["params"]["threadId"] == THREAD


def test_a_failed_turn_ends_the_turn_and_raises_with_codex_words():
    """turn/completed with status failed ends the turn and fails the run with its message."""
    decoder = CodexAppDecoder(_spec(resume_id=THREAD))
    for line in _lines(FAILED):
        decoder.feed(line)
    assert decoder.turn_done
    with pytest.raises(BackendFailed, match="high demand"):
        decoder.finish(exit_code=0, stderr="", duration_ms=5)


def test_requests_from_the_server_are_refused_and_a_thread_error_ends_the_turn():
    """An approval request gets an error answer (runs never approve interactively); an
    error answer to thread/resume ends the turn as a failure."""
    decoder = CodexAppDecoder(_spec(resume_id=THREAD))
    decoder.feed(json.dumps({"id": 99, "method": "item/commandExecution/requestApproval",
                             "params": {}}).encode())
    (answer,) = _requests(decoder.replies())
    assert answer["id"] == 99 and answer["error"]["code"] == -32601
    decoder.feed(json.dumps({"id": 2, "error": {"code": -32600,
                                                "message": "no rollout found"}}).encode())
    assert decoder.turn_done
    with pytest.raises(BackendFailed, match="no rollout found"):
        decoder.finish(exit_code=0, stderr="", duration_ms=5)


def test_only_app_server_flags_make_an_app_server_command():
    """Config flags carry over (with the run's options as -c defaults); an exec-only flag
    means the run stays on codex exec."""
    argv = app_server_argv("codex", _spec(model="m1"), ["--disable", "plugins", "-c", "a=1"])
    assert argv is not None and argv[:2] == ["codex", "app-server"]
    assert argv[-4:] == ["--disable", "plugins", "-c", "a=1"]
    assert "model=" + msgspec.json.encode("m1").decode() in argv
    assert app_server_argv("codex", _spec(), ["--oss"]) is None
    assert app_server_argv("codex", _spec(), ["-c"]) is None
