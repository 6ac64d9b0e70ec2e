"""Runs that pause for client tool results: parking, matching results to calls, parallel
calls, the timeout, and the checks on the tools themselves (fakes, virtual time)."""

from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest

from clinvk.domain import events as ev
from clinvk.domain.config import Config, ServerConfig
from clinvk.domain.errors import InvalidRequest
from clinvk.domain.models import PromptRequest, RunResult
from clinvk.domain.tools import ClientTool, ToolOutcome, check_tools, choice_instruction
from clinvk.entrypoints.bootstrap import bootstrap
from tests.fakes import (
    FakeBackground,
    FakeClock,
    FakeIds,
    FakeSessionStore,
    FakeToolBridge,
    FakeToolCallingRunner,
)
from tests.virtual_time import VIRTUAL_TIME, jumped

pytestmark = pytest.mark.anyio

WEATHER = ClientTool(name="get_weather", description="Weather of a city",
                     parameters={"type": "object", "properties": {"city": {"type": "string"}}})
TIME = ClientTool(name="get_time", parameters={"type": "object"})
TIMEOUT = 300


@pytest.fixture
def anyio_backend():
    """Virtual time: the 300 s result timeout costs nothing and fires only when due."""
    return VIRTUAL_TIME


def _setup(tmp_path, script, *, announce=True, builtin=False, kind=FakeToolCallingRunner):
    bridge = FakeToolBridge()
    runner = kind(bridge, script, announce=announce)
    config = Config(server=ServerConfig(default_workdir=str(tmp_path),
                                        tool_result_timeout_secs=TIMEOUT,
                                        builtin_tools=builtin))
    background = FakeBackground()
    services = bootstrap(config, runner=runner, store=FakeSessionStore(), clock=FakeClock(),
                         ids=FakeIds(), tools=bridge, background=background)
    assert services.tool_runs is not None
    return services.tool_runs, runner, bridge, background


def _request(prompt="weather in Paris?") -> PromptRequest:
    return PromptRequest(backend="claude", prompt=prompt)


async def test_a_call_parks_the_run_and_its_result_resumes_it(tmp_path):
    """The first request is answered with the CLI's call; the result, matched by the call's
    id, reaches the waiting CLI, whose answer is the second request's result."""
    runs, runner, bridge, background = _setup(tmp_path, [[("get_weather", {"city": "Paris"})]])
    async with background:
        step = await runs.start(_request(), [WEATHER])
        assert step.result is None
        [call] = step.calls
        assert (call.name, call.arguments) == ("get_weather", {"city": "Paris"})
        assert runs.knows(call.id) and runs.parked() == 1
        spec = runner.runs[0]
        assert spec.tools is not None and spec.tools.names == ("get_weather",)
        assert spec.tools.url in bridge.channels and spec.ephemeral
        assert not spec.tools.builtin_tools

        done = await runs.resume([ToolOutcome(call_id=call.id, output="sunny")])
        assert done is not None and done.calls == ()
        assert done.result is not None and done.result.output == "results: sunny"
        assert runs.parked() == 0
        assert bridge.channels[spec.tools.url].closed


async def test_calls_made_together_are_answered_together(tmp_path):
    """Two calls the CLI makes at once come out in one answer; a request with only one of
    their results is a 400 naming the field, and both results resume the run."""
    script = [[("get_weather", {"city": "Paris"}), ("get_time", {})]]
    runs, _, _, background = _setup(tmp_path, script)
    async with background:
        step = await runs.start(_request(), [WEATHER, TIME])
        assert sorted(c.name for c in step.calls) == ["get_time", "get_weather"]
        first, second = step.calls
        with pytest.raises(InvalidRequest) as refused:
            await runs.resume([ToolOutcome(call_id=first.id, output="a")], field="messages")
        assert refused.value.field == "messages" and second.id in refused.value.message
        done = await runs.resume([ToolOutcome(call_id=c.id, output=c.name) for c in step.calls])
        assert done is not None and done.result is not None
        assert done.result.output == "results: get_weather, get_time"


async def test_unannounced_calls_arriving_together_are_one_answer(tmp_path):
    """Calls a CLI makes without announcing them first are gathered for a moment, so calls
    made at once still come out together."""
    script = [[("get_weather", {"city": "Rome"}), ("get_time", {})]]
    runs, _, _, background = _setup(tmp_path, script, announce=False)
    async with background:
        before = jumped()
        step = await runs.start(_request(), [WEATHER, TIME])
        assert len(step.calls) == 2 and jumped() > before  # the gathering time ran out


async def test_announced_calls_are_answered_without_gathering(tmp_path):
    """Calls the CLI announced (its tool_use events) are answered as soon as the last of
    them reaches the bridge: no gathering timer runs out."""
    script = [[("get_weather", {"city": "Rome"}), ("get_time", {})]]
    runs, _, _, background = _setup(tmp_path, script)
    async with background:
        before = jumped()
        step = await runs.start(_request(), [WEATHER, TIME])
        assert len(step.calls) == 2 and jumped() == before


class _LateAnnouncer(FakeToolCallingRunner):
    """Makes its call first and announces it only once the call waits at the bridge (a
    CLI whose output line comes after its HTTP call)."""

    async def run(self, spec, on_event=None):
        channel = self.bridge.channels[spec.tools.url]
        async with anyio.create_task_group() as tg:
            outcome = []

            async def call() -> None:
                outcome.append(await channel.call("get_weather", {"city": "Rome"}))

            tg.start_soon(call)
            while not channel._inner._waiting:  # the call is at the bridge
                await anyio.lowlevel.checkpoint()
            await on_event(ev.ToolUse(name="mcp__client__get_weather", input={}))
        return RunResult(backend=spec.backend, output=outcome[0].output, exit_code=0,
                         duration_ms=1)


async def test_a_call_ahead_of_its_announcement_waits_only_for_it(tmp_path):
    """A call that reaches the bridge before the CLI's announcement of it is answered as
    soon as the announcement comes, not after the gathering time."""
    runs, _, _, background = _setup(tmp_path, [], kind=_LateAnnouncer)
    async with background:
        before = jumped()
        step = await runs.start(_request(), [WEATHER])
        assert [c.name for c in step.calls] == ["get_weather"] and jumped() == before


async def test_a_run_can_pause_again_after_a_result(tmp_path):
    """After one result the CLI may call again: the second request gets the new call, the
    third the answer."""
    script = [[("get_weather", {"city": "Oslo"})], [("get_time", {})]]
    runs, _, _, background = _setup(tmp_path, script)
    async with background:
        step = await runs.start(_request(), [WEATHER, TIME])
        step2 = await runs.resume([ToolOutcome(call_id=step.calls[0].id, output="snow")])
        assert step2 is not None and [c.name for c in step2.calls] == ["get_time"]
        step3 = await runs.resume([ToolOutcome(call_id=step2.calls[0].id, output="noon")])
        assert step3 is not None and step3.result is not None
        assert step3.result.output == "results: snow, noon"


async def test_a_parked_run_ends_after_the_timeout_and_its_result_finds_nothing(tmp_path):
    """A run nobody answers within tool_result_timeout_secs is ended (its CLI run is
    cancelled); its result then finds no run (the caller replays the conversation)."""
    runs, runner, bridge, background = _setup(tmp_path, [[("get_weather", {})]])
    async with background:
        step = await runs.start(_request(), [WEATHER])
        call_id = step.calls[0].id
        await anyio.sleep(TIMEOUT - 1)
        assert runs.knows(call_id) and runner.cancelled == 0
        await anyio.sleep(2)
        assert not runs.knows(call_id) and runner.cancelled == 1
        assert all(channel.closed for channel in bridge.channels.values())
        assert await runs.resume([ToolOutcome(call_id=call_id, output="late")]) is None


async def test_results_for_unknown_calls_find_no_run(tmp_path):
    """A result whose id no parked run waits for is not matched to any run."""
    runs, _, _, background = _setup(tmp_path, [])
    async with background:
        assert await runs.resume([ToolOutcome(call_id="call_nope", output="x")]) is None


async def test_tool_choice_none_runs_without_the_bridge(tmp_path):
    """With tool_choice none the CLI gets no tools at all: a plain run answers."""
    runs, runner, bridge, background = _setup(tmp_path, [[("get_weather", {})]])
    async with background:
        step = await runs.start(_request(), [WEATHER], choice="none")
        assert step.result is not None and step.result.output == "hello from fake"
        assert runner.runs[0].tools is None and bridge.channels == {}


async def test_builtin_tools_follow_the_request_then_the_config(tmp_path):
    """builtin_tools: the request's value wins; without one the server's setting holds."""
    runs, runner, _, background = _setup(tmp_path, [], builtin=True)
    async with background:
        await runs.start(_request(), [WEATHER])
        await runs.start(_request(), [WEATHER], builtin_tools=False)
    assert [r.tools.builtin_tools for r in runner.runs] == [True, False]


async def test_required_and_named_choices_are_asked_in_the_system_prompt(tmp_path):
    """`required` and a named tool, which no CLI has a flag for, become an instruction."""
    runs, runner, _, background = _setup(tmp_path, [])
    async with background:
        await runs.start(_request(), [WEATHER], choice="get_weather")
    assert runner.runs[0].system_prompt == choice_instruction("get_weather", ["get_weather"])
    assert "get_weather" in (runner.runs[0].system_prompt or "")


async def test_a_session_id_with_client_tools_is_refused(tmp_path):
    """A clinvk session cannot hold a parked run's conversation: a 400 naming the field."""
    runs, _, _, background = _setup(tmp_path, [])
    async with background:
        with pytest.raises(InvalidRequest) as refused:
            await runs.start(PromptRequest(backend="claude", prompt="x", session_id="s1"),
                             [WEATHER])
    assert refused.value.field == "clinvk.session_id"


@pytest.mark.parametrize(
    ("tools", "field", "words"),
    [
        ([WEATHER, WEATHER], "tools[1].name", "unique"),
        ([ClientTool(name="has space")], "tools[0].name", "letters"),
        ([ClientTool(name="")], "tools[0].name", "letters"),
        ([ClientTool(name="x" * 65)], "tools[0].name", "letters"),
        ([ClientTool(name="t", parameters={"type": "objekt"})], "tools[0].parameters",
         "JSON Schema"),
        ([ClientTool(name="t", parameters={"type": "object", "properties": []})],
         "tools[0].parameters", "properties"),
        ([ClientTool(name="t", parameters={"type": "object", "required": "a"})],
         "tools[0].parameters", "required"),
        ([ClientTool(name="t", parameters={"type": "string"})], "tools[0].parameters",
         "object"),
    ],
)
def test_bad_tools_are_refused_naming_the_field(tools, field, words):
    """Duplicate names, bad names and schemas that are not JSON Schema are 400s naming
    the tool's field."""
    with pytest.raises(InvalidRequest) as refused:
        check_tools(tools, [f"tools[{i}]" for i in range(len(tools))])
    assert refused.value.field == field and words in refused.value.message


def test_good_tools_pass():
    """Names of letters, digits, _ and -, with object schemas (nested ones too), pass."""
    nested = {"type": "object", "properties": {"a": {"type": "array", "items": {
        "type": "object", "properties": {"b": {"type": ["string", "null"]}}}},
        "pair": {"type": "array", "items": [{"type": "string"}, True]}, "any": True},
        "required": ["a"], "additionalProperties": False, "$schema":
        "http://json-schema.org/draft-07/schema#"}
    check_tools([WEATHER, TIME, ClientTool(name="x-y_9", parameters=nested)],
                ["a", "b", "c"])
