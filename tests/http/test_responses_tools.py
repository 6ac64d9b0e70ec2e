"""Client tools on the Responses API on fakes: `function_call` output items (streamed in
OpenAI's event sequence and not), resuming by `call_id` with the whole input or with
previous_response_id, the replay, tool_choice, and the 400s; other tool types unchanged."""

from __future__ import annotations

import json
import time

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from openai import OpenAI
from starlette.testclient import TestClient

from clinvk.adapters.http.app import create_app
from clinvk.domain import events as ev
from clinvk.domain.config import Config, ServerConfig
from clinvk.entrypoints.bootstrap import bootstrap
from tests.fakes import (
    FakeClock,
    FakeIds,
    FakeSessionStore,
    FakeToolCallingRunner,
)
from tests.http import tool_fixtures
from tests.strategies import responses_tool_fields
from tests.support.live import LiveServer

RESPONSES = "/openai/v1/responses"
WEATHER = {"type": "function", "name": "get_weather", "description": "The weather",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
           "strict": False}
TIME = {"type": "function", "name": "get_time", "parameters": {"type": "object"}}
ASK = [{"role": "user", "content": "weather?"}]

# The shared client-tools fixtures (tests/http/tool_fixtures.py).
bridge, runner, client = tool_fixtures.bridge, tool_fixtures.runner, tool_fixtures.client


def _events(text: str) -> list[dict]:
    return [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: ")]


def _outputs(calls: list[dict], *texts: str) -> list[dict]:
    return [{"type": "function_call_output", "call_id": c["call_id"], "output": t}
            for c, t in zip(calls, texts, strict=True)]


def test_the_answer_is_a_function_call_and_its_output_resumes(client, runner):
    """A completed response whose output is a function_call item (call_id, name, JSON
    arguments); the whole input plus the function_call_output resumes the same run."""
    first = client.post(RESPONSES, json={"model": "claude", "input": ASK, "tools": [WEATHER]})
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["status"] == "completed"
    [call] = body["output"]
    assert (call["type"], call["name"], call["status"]) == ("function_call", "get_weather",
                                                             "completed")
    assert call["call_id"].startswith("call_") and call["id"].startswith("fc")
    assert json.loads(call["arguments"]) == {"city": "Paris"}
    assert body["tools"] == [WEATHER] and body["store"] is True
    assert len(runner.runs) == 1 and runner.runs[0].tools.names == ("get_weather",)
    second = client.post(RESPONSES, json={"model": "claude", "tools": [WEATHER], "input": [
        *ASK, call, *_outputs([call], "sunny")]})
    assert second.status_code == 200, second.text
    assert "x-clinvk-tool-replay" not in second.headers
    [message] = second.json()["output"]
    assert message["type"] == "message"
    assert message["content"][0]["text"] == "results: sunny"
    assert len(runner.runs) == 1  # the same run went on


def test_previous_response_id_with_only_the_outputs_resumes(client, runner):
    """previous_response_id and only the function_call_output items resume the parked run
    (the calls are not in the input; the run knows them)."""
    first = client.post(RESPONSES, json={"model": "claude", "input": ASK,
                                         "tools": [WEATHER]}).json()
    second = client.post(RESPONSES, json={
        "model": "claude", "tools": [WEATHER], "previous_response_id": first["id"],
        "input": _outputs(first["output"], "rain")})
    assert second.status_code == 200, second.text
    assert second.json()["output"][0]["content"][0]["text"] == "results: rain"
    assert len(runner.runs) == 1


def test_stream_has_openais_function_call_events(client):
    """Streamed: created, in_progress, output_item.added (function_call, empty arguments),
    function_call_arguments.delta and .done, output_item.done, completed; sequence
    numbers 0, 1, 2, ...; the resumed stream is the text events then completed."""
    first = client.post(RESPONSES, json={"model": "claude", "input": ASK, "tools": [WEATHER],
                                         "stream": True})
    events = _events(first.text)
    assert [e["type"] for e in events] == [
        "response.created", "response.in_progress", "response.output_item.added",
        "response.function_call_arguments.delta", "response.function_call_arguments.done",
        "response.output_item.done", "response.completed"]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    added, delta, done, item_done, completed = events[2:]
    assert added["item"]["type"] == "function_call" and added["item"]["arguments"] == ""
    assert added["item"]["status"] == "in_progress"
    assert json.loads(delta["delta"]) == {"city": "Paris"}
    assert (done["arguments"], done["name"]) == (delta["delta"], "get_weather")
    assert delta["item_id"] == done["item_id"] == added["item"]["id"]
    call = item_done["item"]
    assert completed["response"]["output"] == [call]
    assert completed["response"]["status"] == "completed"
    second = client.post(RESPONSES, json={"model": "claude", "tools": [WEATHER], "stream": True,
                                          "input": [*ASK, call, *_outputs([call], "fog")]})
    events = _events(second.text)
    assert [e["type"] for e in events] == [
        "response.created", "response.in_progress", "response.output_item.added",
        "response.content_part.added", "response.output_text.delta",
        "response.output_text.done", "response.content_part.done",
        "response.output_item.done", "response.completed"]
    assert events[-1]["response"]["output"][0]["content"][0]["text"] == "results: fog"


def test_parallel_calls_come_together_and_need_every_output(client, runner):
    """Two calls made at once are two function_call items of one response; one output
    alone is a 400 naming input; both resume the run."""
    runner.script = [[("get_weather", {"city": "Paris"}), ("get_time", {})]]
    first = client.post(RESPONSES, json={"model": "claude", "input": ASK,
                                         "tools": [WEATHER, TIME]}).json()
    calls = first["output"]
    assert sorted(c["name"] for c in calls) == ["get_time", "get_weather"]
    partial = client.post(RESPONSES, json={"model": "claude", "tools": [WEATHER, TIME],
                                           "input": [*ASK, *calls, *_outputs(calls[:1], "x")]})
    assert partial.status_code == 400 and partial.json()["error"]["param"] == "input"
    done = client.post(RESPONSES, json={
        "model": "claude", "tools": [WEATHER, TIME],
        "input": [*ASK, *calls, *_outputs(calls, *[c["name"] for c in calls])]}).json()
    assert done["output"][0]["content"][0]["text"] == "results: get_weather, get_time"


def test_an_output_whose_run_is_gone_is_replayed(client, runner):
    """An output for a call of the input that no parked run waits for starts a fresh run
    whose prompt carries the whole input, call and output included, and says so."""
    runner.script = []
    call = {"type": "function_call", "call_id": "call_from_before", "name": "get_weather",
            "arguments": '{"city":"Oslo"}'}
    r = client.post(RESPONSES, json={"model": "claude", "tools": [WEATHER], "input": [
        *ASK, call, {"type": "function_call_output", "call_id": "call_from_before",
                     "output": "snow"}]})
    assert r.status_code == 200 and r.headers["x-clinvk-tool-replay"] == "1"
    prompt = runner.runs[-1].prompt
    assert "call_from_before" in prompt and "snow" in prompt and "weather?" in prompt


def test_a_new_message_after_the_outputs_gets_a_fresh_run(client, runner):
    """A parked run can only be given results: a user message after them is a fresh run
    of the whole input."""
    first = client.post(RESPONSES, json={"model": "claude", "input": ASK,
                                         "tools": [WEATHER]}).json()
    runner.script = []
    r = client.post(RESPONSES, json={"model": "claude", "tools": [WEATHER], "input": [
        *ASK, *first["output"], *_outputs(first["output"], "sunny"),
        {"role": "user", "content": "and tomorrow?"}]})
    assert r.status_code == 200
    assert len(runner.runs) == 2 and "and tomorrow?" in runner.runs[-1].prompt


def test_tool_choice_none_runs_without_tools_and_required_is_asked(client, runner):
    """tool_choice none offers no tools (a plain run); required asks in the system prompt;
    a named function becomes an instruction naming it."""
    r = client.post(RESPONSES, json={"model": "claude", "input": ASK, "tools": [WEATHER],
                                     "tool_choice": "none"})
    assert r.status_code == 200 and runner.runs[-1].tools is None
    assert runner.runs[-1].ephemeral is True  # the conversation is kept beside, not twice
    client.post(RESPONSES, json={"model": "claude", "input": ASK, "tools": [WEATHER],
                                 "tool_choice": {"type": "function", "name": "get_weather"}})
    assert "'get_weather'" in runner.runs[-1].system_prompt


def test_hosted_and_free_form_tools_are_not_offered(client, runner):
    """Only function tools reach the bridge: web_search, custom and namespace tools are
    left out (a request with none of function type is a plain run, as before)."""
    others = [{"type": "web_search"}, {"type": "custom", "name": "apply_patch"},
              {"type": "namespace", "name": "ns", "tools": []}]
    r = client.post(RESPONSES, json={"model": "claude", "input": ASK, "tools": others})
    assert r.status_code == 200 and runner.runs[-1].tools is None
    assert r.json()["tools"] == []
    client.post(RESPONSES, json={"model": "claude", "input": ASK, "tools": [*others, WEATHER]})
    assert runner.runs[-1].tools.names == ("get_weather",)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"tools": [WEATHER, WEATHER]}, "tools[1].name"),
        ({"tools": [{**WEATHER, "name": "bad name"}]}, "tools[0].name"),
        ({"tools": [{**WEATHER, "parameters": {"type": "object", "properties": 3}}]},
         "tools[0].parameters"),
        ({"tools": [{**WEATHER, "strict": "yes"}]}, "tools[0].strict"),
        ({"tools": [WEATHER], "tool_choice": {"type": "function", "name": "nope"}},
         "tool_choice"),
        ({"tools": [WEATHER], "input": [*ASK, {"type": "function_call_output",
                                               "call_id": "call_x", "output": "r"}]},
         "input[1].call_id"),
        ({"tools": [WEATHER], "clinvk": {"session_id": "s"}}, "clinvk.session_id"),
        ({"tools": [WEATHER], "previous_response_id": "resp_unknown"}, "previous_response_id"),
    ],
)
@pytest.mark.parametrize("stream", [False, True])
def test_bad_tools_are_400s_naming_the_param(client, runner, body, param, stream):
    """Bad tools, an unknown tool_choice, an output for no call and a previous response
    clinvk does not keep are OpenAI 400s naming the field, streamed or not; nothing runs."""
    r = client.post(RESPONSES, json={"model": "claude", "input": ASK, "stream": stream, **body})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param
    assert runner.runs == []


def test_the_sdks_stream_helper_assembles_the_calls_and_the_answer(tmp_path, bridge, runner):
    """The openai SDK's `responses.stream` (which rebuilds the response from the events and
    checks their order) gets the function_call with its arguments, then the text after
    the output; a model message before the calls comes first in the output."""
    config = Config(server=ServerConfig(default_workdir=str(tmp_path), heartbeat_secs=5))
    services = bootstrap(config, runner=runner, store=FakeSessionStore(), clock=FakeClock(),
                         ids=FakeIds(), tools=bridge)
    with LiveServer(create_app(services)) as server, OpenAI(
            base_url=f"{server.url}/openai/v1", api_key="x", max_retries=0) as sdk:
        with sdk.responses.stream(model="claude", input="weather?", tools=[WEATHER]) as stream:
            deltas = [e.delta for e in stream
                      if e.type == "response.function_call_arguments.delta"]
            first = stream.get_final_response()
        [call] = first.output
        assert call.type == "function_call" and json.loads(call.arguments) == {"city": "Paris"}
        assert deltas == [call.arguments]
        with sdk.responses.stream(model="claude", tools=[WEATHER], previous_response_id=first.id,
                                  input=[{"type": "function_call_output",
                                          "call_id": call.call_id, "output": "hail"}]) as stream:
            text = "".join(e.delta for e in stream if e.type == "response.output_text.delta")
            second = stream.get_final_response()
        assert text == second.output_text == "results: hail"


class _TalkingRunner(FakeToolCallingRunner):
    """Writes a sentence before its calls, as a model that says what it is about to do."""

    async def run(self, spec, on_event=None):
        if spec.tools is not None and on_event is not None and not self.runs:
            await on_event(ev.TextDelta(text="Let me check."))
        return await super().run(spec, on_event)


def test_text_before_the_calls_is_a_message_item_first(tmp_path, bridge):
    """Text the model wrote before its calls is a message item at output_index 0 and the
    calls follow it (streamed: the message's events, then the call's); the SDK's stream
    helper rebuilds the same output as the plain answer."""
    runner = _TalkingRunner(bridge, [[("get_weather", {"city": "Paris"})]])
    config = Config(server=ServerConfig(default_workdir=str(tmp_path), heartbeat_secs=5))
    services = bootstrap(config, runner=runner, store=FakeSessionStore(), clock=FakeClock(),
                         ids=FakeIds(), tools=bridge)
    with LiveServer(create_app(services)) as server, OpenAI(
            base_url=f"{server.url}/openai/v1", api_key="x", max_retries=0) as sdk:
        with sdk.responses.stream(model="claude", input="weather?", tools=[WEATHER]) as stream:
            indexes = [(e.type, e.output_index) for e in stream
                       if e.type.startswith("response.output_item.")]
            final = stream.get_final_response()
        assert [item.type for item in final.output] == ["message", "function_call"]
        assert final.output[0].content[0].text == "Let me check."
        assert indexes == [("response.output_item.added", 0), ("response.output_item.done", 0),
                           ("response.output_item.added", 1), ("response.output_item.done", 1)]
        runner.runs.clear()
        plain = sdk.responses.create(model="claude", input="weather?", tools=[WEATHER])
        assert [item.type for item in plain.output] == ["message", "function_call"]
        assert plain.output_text == "Let me check."


def test_the_conversation_is_kept_and_continues_by_replay(client, runner):
    """Tool answers are stored (GET finds them, an item_reference to a call resolves);
    after the final answer, a plain request with previous_response_id continues the
    conversation in a fresh run whose prompt replays it: question, call, result, answer."""
    first = client.post(RESPONSES, json={"model": "claude", "input": ASK,
                                         "tools": [WEATHER]}).json()
    [call] = first["output"]
    assert client.get(f"{RESPONSES}/{first['id']}").json()["output"] == [call]
    final = client.post(RESPONSES, json={
        "model": "claude", "tools": [WEATHER], "previous_response_id": first["id"],
        "input": _outputs([call], "sunny")}).json()
    assert final["output"][0]["content"][0]["text"] == "results: sunny"
    runner.script = []
    after = client.post(RESPONSES, json={"model": "claude", "previous_response_id": final["id"],
                                         "input": "and tomorrow?"})
    assert after.status_code == 200, after.text
    prompt = runner.runs[-1].prompt
    for text in ("weather?", call["call_id"], "get_weather", "sunny", "results: sunny",
                 "and tomorrow?"):
        assert text in prompt
    assert runner.runs[-1].resume_id is None
    # A client that stored the answers may refer to the call instead of resending it.
    replayed = client.post(RESPONSES, json={"model": "claude", "tools": [WEATHER], "input": [
        *ASK, {"type": "item_reference", "id": call["id"]}, *_outputs([call], "fog")]})
    assert replayed.status_code == 200 and replayed.headers["x-clinvk-tool-replay"] == "1"
    assert "fog" in runner.runs[-1].prompt


def test_store_false_keeps_nothing(client):
    """With store: false the tool answers are not kept: store false in them, GET 404, no
    session header."""
    r = client.post(RESPONSES, json={"model": "claude", "input": ASK, "tools": [WEATHER],
                                     "store": False})
    assert r.json()["store"] is False and "x-clinvk-session-id" not in r.headers
    assert client.get(f"{RESPONSES}/{r.json()['id']}").status_code == 404


def test_previous_response_id_replays_when_the_run_is_gone(tmp_path, bridge, runner):
    """An output sent with previous_response_id after its run ended (the result timeout)
    is replayed: the stored conversation (question and call) and the output make the
    prompt of a fresh run, and the answer says so."""
    config = Config(server=ServerConfig(default_workdir=str(tmp_path), heartbeat_secs=5,
                                        tool_result_timeout_secs=0.05))
    services = bootstrap(config, runner=runner, store=FakeSessionStore(), clock=FakeClock(),
                         ids=FakeIds(), tools=bridge)
    with TestClient(create_app(services)) as c:
        first = c.post(RESPONSES, json={"model": "claude", "input": ASK,
                                        "tools": [WEATHER]}).json()
        [call] = first["output"]
        while services.tool_runs.parked():  # the run ends once nobody answered in time
            time.sleep(0.01)
        runner.script = []
        r = c.post(RESPONSES, json={"model": "claude", "tools": [WEATHER],
                                    "previous_response_id": first["id"],
                                    "input": _outputs([call], "late")})
        assert r.status_code == 200, r.text
        assert r.headers["x-clinvk-tool-replay"] == "1"
        prompt = runner.runs[-1].prompt
        assert "weather?" in prompt and call["call_id"] in prompt and "late" in prompt


@settings(max_examples=80, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(fields=responses_tool_fields)
def test_arbitrary_tool_fields_are_answered_or_a_400(client, runner, fields):
    """Any tools, tool_choice and tool items, well formed or not, are answered or refused
    with a 400 in OpenAI's envelope naming a field, never a server error."""
    runner.script = []
    r = client.post(RESPONSES, json={"model": "claude", "input": ASK, **fields})
    assert r.status_code in (200, 400), r.text
    if r.status_code == 400:
        assert r.json()["error"]["param"]


def test_tools_after_a_plain_turn_replay_its_conversation(client, runner):
    """A request with tools whose previous_response_id names a plain run's answer gets a
    fresh run (the CLI's session is not resumed while tools are offered) whose prompt
    carries the earlier turn."""
    plain = client.post(RESPONSES, json={"model": "claude", "input": "my name is Zed"})
    assert plain.status_code == 200, plain.text
    r = client.post(RESPONSES, json={"model": "claude", "tools": [WEATHER],
                                     "previous_response_id": plain.json()["id"],
                                     "input": "weather?"})
    assert r.status_code == 200 and r.json()["output"][0]["type"] == "function_call"
    spec = runner.runs[-1]
    assert spec.tools is not None and spec.resume_id is None
    assert "my name is Zed" in spec.prompt and spec.prompt.endswith("weather?")


class _SlowAfterResults(FakeToolCallingRunner):
    """Thinks a while after getting the results before it answers (emits nothing)."""

    async def run(self, spec, on_event=None):
        async def quiet(event):
            if isinstance(event, ev.ToolResult):
                await anyio.sleep(0.5)
            if on_event is not None:
                await on_event(event)

        return await super().run(spec, quiet)


def test_a_resumed_stream_gets_heartbeats_while_the_cli_is_silent(tmp_path, bridge):
    """While the resumed CLI is silent, `: ping` comments keep the stream alive (after
    response.created / in_progress, which open it, and before the answer's events); the
    events still number from 0."""
    runner = _SlowAfterResults(bridge, [[("get_weather", {"city": "Paris"})]])
    config = Config(server=ServerConfig(default_workdir=str(tmp_path), heartbeat_secs=0.05))
    services = bootstrap(config, runner=runner, store=FakeSessionStore(), clock=FakeClock(),
                         ids=FakeIds(), tools=bridge)
    with TestClient(create_app(services)) as c:
        first = c.post(RESPONSES, json={"model": "claude", "input": ASK,
                                        "tools": [WEATHER]}).json()
        second = c.post(RESPONSES, json={"model": "claude", "tools": [WEATHER], "stream": True,
                                         "previous_response_id": first["id"],
                                         "input": _outputs(first["output"], "sunny")})
    assert second.text.index(": ping") < second.text.index("event: response.output_item.added")
    events = _events(second.text)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert events[-1]["response"]["output"][0]["content"][0]["text"] == "results: sunny"
