"""The requests Claude Code 2.1.197 really sends (tests/fixtures/clients/claude-code,
captured from the model double) replayed against the Anthropic dialect, in-process on
fakes: each gets a 200 stream the `anthropic` SDK reads, and the CLI gets the user's
words, the system turn in place and Claude Code's system prompt."""

from __future__ import annotations

import json
from pathlib import Path

import anthropic
import httpx2
import pytest
from anthropic import Anthropic, Stream
from anthropic.lib.streaming import MessageStream
from anthropic.types import RawMessageStreamEvent

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "clients" / "claude-code"
CAPTURED = sorted(FIXTURES.glob("turn-*.json"))


def load(path: Path) -> dict:
    return json.loads(path.read_text())


def replay(client, captured: dict):
    """POST the captured body to clinvk's /anthropic with the captured path and headers."""
    headers = {k: v for k, v in captured["headers"].items() if k.lower() != "x-api-key"}
    return client.post("/anthropic" + captured["path"], content=json.dumps(captured["body"]),
                       headers=headers)


def sdk_read(body: bytes) -> MessageStream:
    """The SDK's own stream helper over an SSE body."""
    response = httpx2.Response(
        200, headers={"content-type": "text/event-stream"}, content=iter([body]),
        request=httpx2.Request("POST", "http://clinvk.test/v1/messages"),
    )
    with Anthropic(api_key="not-needed", base_url="http://clinvk.test") as sdk:
        raw = Stream(cast_to=RawMessageStreamEvent, response=response, client=sdk)
        return MessageStream(raw, output_format=anthropic.NOT_GIVEN)


def test_the_fixtures_are_what_claude_code_sends():
    """The fixtures hold a first turn and a --continue turn of Claude Code's real shape."""
    assert [p.name for p in CAPTURED] == ["turn-1.json", "turn-2.json"]
    first, second = (load(p) for p in CAPTURED)
    assert first["path"] == "/v1/messages?beta=true"
    assert [m["role"] for m in first["body"]["messages"]] == ["user", "system"]
    assert [m["role"] for m in second["body"]["messages"]] == ["user", "system", "assistant",
                                                               "user"]
    assert first["body"]["thinking"] == {"type": "adaptive"}
    assert first["body"]["output_config"] == {"effort": "high"}
    assert len(first["body"]["tools"]) == 24 and first["body"]["stream"] is True
    assert "anthropic-beta" in first["headers"]


@pytest.mark.parametrize("path", CAPTURED, ids=lambda p: p.stem)
def test_each_captured_request_streams_an_answer_the_sdk_reads(client, runner, path):
    """A captured request is a 200 `text/event-stream` whose events the SDK reads back
    into the fake CLI's answer."""
    captured = load(path)
    r = replay(client, captured)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/event-stream")
    stream = sdk_read(r.content)
    assert "".join(stream.text_stream) == "hello from fake"
    final = stream.get_final_message()
    assert final.model == captured["body"]["model"] and final.stop_reason == "end_turn"
    assert [b.type for b in final.content] == ["text"]


def test_the_first_turn_reaches_the_cli_with_the_system_turn_in_place(client, runner):
    """The first turn's prompt ends with the user's words; Claude Code's system turn comes
    before them as a labelled JSON array; its `system` array is the system prompt."""
    captured = load(FIXTURES / "turn-1.json")
    assert replay(client, captured).status_code == 200
    spec = runner.runs[-1]
    system_turn = captured["body"]["messages"][1]["content"]
    head, after, blank, lead, user = spec.prompt.split("\n", 4)
    assert head == "System messages sent after the latest user message, as a JSON array:"
    assert json.loads(after) == [{"role": "system", "content": system_turn}]
    assert (blank, lead) == ("", "Reply to this latest user message:")
    assert user.startswith("<system-reminder>") and user.endswith("\nhello")
    system = captured["body"]["system"]
    assert spec.system_prompt == "\n".join(block["text"] for block in system)
    assert spec.model == "claude-opus-4-8" and spec.max_tokens == 64000


def test_the_continued_turn_carries_the_earlier_turns(client, runner):
    """The --continue turn sends the earlier turns (system turn included) as history and
    the new user message last."""
    captured = load(FIXTURES / "turn-2.json")
    assert replay(client, captured).status_code == 200
    prompt = runner.runs[-1].prompt
    head, history, blank, lead, user = prompt.split("\n", 4)
    assert head.startswith("The conversation so far")
    assert [t["role"] for t in json.loads(history)] == ["user", "system", "assistant"]
    assert json.loads(history)[2]["content"] == "w0 w1 w2 w3 w4"
    assert (blank, lead, user) == ("", "Reply to this latest user message:", "and again")


def test_count_tokens_answers_for_a_captured_request(client):
    """count_tokens takes a Claude Code body (with its beta query) and estimates it."""
    captured = load(FIXTURES / "turn-1.json")
    body = {k: v for k, v in captured["body"].items() if k not in ("max_tokens", "stream")}
    r = client.post("/anthropic/v1/messages/count_tokens?beta=true", json=body)
    assert r.status_code == 200, r.text
    assert set(r.json()) == {"input_tokens"}
    assert r.json()["input_tokens"] > 1000  # a 6 kB system prompt and 24 tool schemas
