"""gemini --acp turns: the protocol clinvk writes and the lines it reads (recorded from
gemini 0.61.0 against the model double, trimmed to the fields that matter)."""

from __future__ import annotations

import json

import pytest

from clinvk.adapters.backends.gemini_acp import GeminiAcpDecoder
from clinvk.domain.errors import BackendFailed
from clinvk.domain.events import Init, TextDelta, Usage
from clinvk.domain.models import RunSpec

SESSION = "ec7da22c-8c0e-4945-92e5-b46c15f5aa07"


def _update(kind: str, text: str) -> dict:
    return {"jsonrpc": "2.0", "method": "session/update", "params": {
        "sessionId": SESSION,
        "update": {"sessionUpdate": kind, "content": {"type": "text", "text": text}}}}


OPENED = {"jsonrpc": "2.0", "id": 2, "result": {"sessionId": SESSION, "modes": {}}}
LOADED = {"jsonrpc": "2.0", "id": 2, "result": {"modes": {}}}
ANSWER = [
    _update("agent_message_chunk", "second"),
    _update("agent_message_chunk", " answer"),
    {"jsonrpc": "2.0", "id": 3, "result": {"stopReason": "end_turn", "_meta": {"quota": {
        "token_count": {"input_tokens": 7, "output_tokens": 2}}}}},
]


def _spec(**kw) -> RunSpec:
    return RunSpec(backend="gemini", prompt="What is the secret word?", workdir="/w", **kw)


def _feed(decoder, records) -> tuple[list, list[dict]]:
    events, written = [], []
    for record in records:
        events += decoder.feed(json.dumps(record).encode())
        written += [json.loads(x) for x in decoder.replies().splitlines() if x.strip()]
    return events, written


def test_a_first_turn_opens_a_session_then_sends_the_prompt():
    """A fresh process gets initialize and session/new; once the session answers, the
    prompt follows; its chunks stream and its answer ends the turn."""
    decoder = GeminiAcpDecoder(_spec())
    opening = [json.loads(x) for x in decoder.opening(first=True).splitlines()]
    assert [r["method"] for r in opening] == ["initialize", "session/new"]
    assert opening[1]["params"] == {"cwd": "/w", "mcpServers": []}
    events, written = _feed(decoder, [{"jsonrpc": "2.0", "id": 1, "result": {}}, OPENED])
    assert [w["method"] for w in written] == ["session/prompt"]
    assert written[0]["params"]["sessionId"] == SESSION
    assert isinstance(events[0], Init) and events[0].backend_session_id == SESSION
    events, _ = _feed(decoder, ANSWER)
    assert [e.text for e in events if isinstance(e, TextDelta)] == ["second", " answer"]
    assert isinstance(events[-1], Usage) and decoder.turn_done
    result = decoder.finish(exit_code=0, stderr="", duration_ms=5)
    assert result.output == "second answer" and result.backend_session_id == SESSION
    assert (result.usage.input_tokens, result.usage.output_tokens) == (7, 2)


def test_a_loaded_session_replays_its_history_which_is_not_the_answer():
    """session/load replays earlier turns as updates before it answers; only what comes
    after the prompt is this turn's text."""
    decoder = GeminiAcpDecoder(_spec(resume_id=SESSION))
    opening = [json.loads(x) for x in decoder.opening(first=True).splitlines()]
    assert opening[1]["method"] == "session/load"
    assert opening[1]["params"]["sessionId"] == SESSION
    replay = [_update("user_message_chunk", "The secret word is PELICAN."),
              _update("agent_message_chunk", "first answer")]
    events, written = _feed(decoder, [*replay, LOADED, *ANSWER])
    assert [w["method"] for w in written] == ["session/prompt"]
    assert [e.text for e in events if isinstance(e, TextDelta)] == ["second", " answer"]
    assert decoder.finish(exit_code=0, stderr="", duration_ms=5).output == "second answer"


def test_a_later_turn_is_one_prompt_and_a_failed_call_carries_the_api_status():
    """On a process that serves the session already a turn is just session/prompt; an
    error answer ends the turn and fails with the API's status."""
    decoder = GeminiAcpDecoder(_spec(resume_id=SESSION))
    (prompt,) = [json.loads(x) for x in decoder.opening(first=False).splitlines()]
    assert prompt["method"] == "session/prompt"
    _feed(decoder, [{"jsonrpc": "2.0", "id": prompt["id"], "error": {
        "code": 500, "message": '{"error":{"code":500,"message":"injected 500"}}'}}])
    assert decoder.turn_done
    with pytest.raises(BackendFailed, match="injected 500") as caught:
        decoder.finish(exit_code=0, stderr="", duration_ms=5)
    assert "API status 500" in caught.value.message


def test_tool_permission_requests_are_declined():
    """A permission request is answered with a reject option (runs never approve
    interactively); other requests are refused."""
    decoder = GeminiAcpDecoder(_spec())
    _, written = _feed(decoder, [
        {"jsonrpc": "2.0", "id": 7, "method": "session/request_permission", "params": {
            "options": [{"optionId": "yes", "kind": "allow_once"},
                        {"optionId": "no", "kind": "reject_once"}]}},
        {"jsonrpc": "2.0", "id": 8, "method": "fs/read_text_file", "params": {}},
    ])
    assert written[0] == {"jsonrpc": "2.0", "id": 7,
                          "result": {"outcome": {"outcome": "selected", "optionId": "no"}}}
    assert written[1]["id"] == 8 and written[1]["error"]["code"] == -32601


def test_the_model_that_answered_is_reported_as_gemini_p_reports_it():
    """The result names the model of the answer's `model_usage` (what `gemini -p` reads
    from its stats), not only the one asked for."""
    decoder = GeminiAcpDecoder(_spec())
    decoder.opening(first=True)
    answer = {"jsonrpc": "2.0", "id": 3, "result": {"stopReason": "end_turn", "_meta": {
        "quota": {"token_count": {"input_tokens": 7, "output_tokens": 5},
                  "model_usage": [{"model": "gemini-2.5-flash",
                                   "token_count": {"input_tokens": 7, "output_tokens": 5}}]}}}}
    _feed(decoder, [{"jsonrpc": "2.0", "id": 1, "result": {}}, OPENED, answer])
    result = decoder.finish(exit_code=0, stderr="", duration_ms=5)
    assert result.model == "gemini-2.5-flash" and result.backend_session_id == SESSION
