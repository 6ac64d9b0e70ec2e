"""Usage in answers that end in tool calls: what the CLI reported before its pause, each
answer its own part (fakes, virtual time; claude's decoder on its own lines)."""

from __future__ import annotations

import json

import pytest

from clinvk.adapters.backends.claude import ClaudeDecoder
from clinvk.adapters.http.anthropic.stream import MessageStreamWriter
from clinvk.domain import events as ev
from clinvk.domain.config import Config, ServerConfig
from clinvk.domain.models import PromptRequest, RunSpec, TokenUsage
from clinvk.domain.tools import ClientTool, ToolOutcome
from clinvk.entrypoints.bootstrap import bootstrap
from tests.fakes import (
    FakeBackground,
    FakeClock,
    FakeIds,
    FakeSessionStore,
    FakeToolBridge,
    FakeToolCallingRunner,
)
from tests.virtual_time import VIRTUAL_TIME

WEATHER = ClientTool(name="get_weather", parameters={"type": "object"})


@pytest.fixture
def anyio_backend():
    return VIRTUAL_TIME


def _runs(tmp_path, script, so_far, total):
    bridge = FakeToolBridge()
    runner = FakeToolCallingRunner(bridge, script, so_far=so_far)
    runner.usage = total
    config = Config(server=ServerConfig(default_workdir=str(tmp_path)))
    background = FakeBackground()
    services = bootstrap(config, runner=runner, store=FakeSessionStore(), clock=FakeClock(),
                         ids=FakeIds(), tools=bridge, background=background)
    return services.tool_runs, background


def _u(i: int, o: int) -> TokenUsage:
    return TokenUsage(input_tokens=i, output_tokens=o)


@pytest.mark.anyio
async def test_each_answer_reports_its_own_part_of_the_usage(tmp_path):
    """Two pauses with the usage so far 10/2 then 25/5 and a final 40/9: the answers
    report 10/2, 15/3 and 15/4, which add up to the run's usage."""
    script = [[("get_weather", {"city": "P"})], [("get_weather", {"city": "R"})]]
    runs, background = _runs(tmp_path, script, [_u(10, 2), _u(25, 5)], _u(40, 9))
    async with background:
        first = await runs.start(PromptRequest(backend="claude", prompt="x"), [WEATHER])
        assert first.usage == _u(10, 2)
        second = await runs.resume([ToolOutcome(call_id=first.calls[0].id, output="a")])
        assert second is not None and second.usage == _u(15, 3)
        last = await runs.resume([ToolOutcome(call_id=second.calls[0].id, output="b")])
        assert last is not None and last.result is not None
        assert last.usage == last.result.token_usage == _u(15, 4)


@pytest.mark.anyio
async def test_a_cli_reporting_only_at_the_end_gives_zeros_then_the_whole(tmp_path):
    """Without usage before the pause (codex, gemini) the calls' answer reports zeros and
    the final answer the whole run."""
    runs, background = _runs(tmp_path, [[("get_weather", {})]], None, _u(40, 9))
    async with background:
        first = await runs.start(PromptRequest(backend="codex", prompt="x"), [WEATHER])
        assert first.usage == TokenUsage()
        last = await runs.resume([ToolOutcome(call_id=first.calls[0].id, output="a")])
        assert last is not None and last.result is not None
        assert last.result.token_usage == _u(40, 9)


def _line(kind: str, **fields) -> bytes:
    return json.dumps({"type": kind, **fields}).encode()


def _event(event: dict) -> bytes:
    return _line("stream_event", event=event, parent_tool_use_id=None)


def _start(inp: int, cached: int = 0) -> bytes:
    return _event({"type": "message_start", "message": {
        "model": "m", "content": [],
        "usage": {"input_tokens": inp, "cache_read_input_tokens": cached, "output_tokens": 1}}})


def _delta(stop: str, out: int) -> bytes:
    return _event({"type": "message_delta", "delta": {"stop_reason": stop},
                   "usage": {"output_tokens": out}})


def test_claude_reports_usage_so_far_before_its_tool_calls():
    """claude's stream-json (as the real CLI writes it): the assistant message with the
    tool_use gives the usage so far before the ToolUse, message_delta the call's final
    output tokens; the next model call adds to them; the result gives the whole."""
    decoder = ClaudeDecoder(RunSpec(backend="claude", prompt="x", workdir="/tmp"))
    use = {"type": "tool_use", "id": "toolu_1", "name": "mcp__client__get_weather",
           "input": {"city": "P"}}
    assistant = _line("assistant", parent_tool_use_id=None, message={
        "model": "m", "content": [use], "usage": {"input_tokens": 13, "output_tokens": 1}})
    events = [e for line in (_start(13, cached=4), assistant, _delta("tool_use", 6))
              for e in decoder.feed(line)]
    assert [type(e) for e in events] == [ev.Usage, ev.ToolUse, ev.Usage]
    assert events[0].so_far and events[0].usage == TokenUsage(
        input_tokens=17, output_tokens=1, cached_tokens=4)
    assert events[2].so_far and events[2].usage == TokenUsage(
        input_tokens=17, output_tokens=6, cached_tokens=4)
    # The next call ends with text: no mid-run usage, the result has the total.
    later = [e for line in (_start(20), _delta("end_turn", 3)) for e in decoder.feed(line)]
    assert later == []
    result = _line("result", subtype="success", result="ok", session_id="s",
                   usage={"input_tokens": 33, "cache_read_input_tokens": 4,
                          "output_tokens": 9})
    [final] = decoder.feed(result)
    assert not final.so_far and final.usage == TokenUsage(
        input_tokens=37, output_tokens=9, cached_tokens=4)


def test_anthropic_stream_start_takes_no_usage_so_far():
    """A usage so far before the stream opens stays out of message_start (its
    message_delta has the whole usage; LangChain adds the two)."""
    writer = MessageStreamWriter(id="msg_1", model="claude")
    writer.event(ev.Usage(usage=TokenUsage(input_tokens=10, output_tokens=2), so_far=True))
    start = json.loads(writer.open().split(b"data: ")[1].split(b"\n")[0])
    assert start["message"]["usage"]["input_tokens"] == 0
