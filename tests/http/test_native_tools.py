"""Client tools on the native API on fakes: `tools` answers with the CLI's calls
(`tool_calls`, stop_reason tool_calls; streamed: `tool_call` lines and a `done` line),
`tool_results` resumes the parked run, and bad input is a problem+json 400 naming the
field."""

from __future__ import annotations

import json

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
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
from tests.strategies import native_tool_fields

PROMPT = "/api/v1/prompt"
WEATHER = {"name": "get_weather", "description": "The weather",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}
TIME = {"name": "get_time"}
ASK = {"backend": "claude", "prompt": "weather?"}

# The shared client-tools fixtures (tests/http/tool_fixtures.py).
bridge, runner, client = tool_fixtures.bridge, tool_fixtures.runner, tool_fixtures.client


def test_the_answer_is_the_calls_and_tool_results_resume(client, runner):
    """stop_reason tool_calls with the calls (id, name, arguments as an object); a request
    with tool_results for them resumes the same run, whose answer quotes them."""
    first = client.post(PROMPT, json={**ASK, "tools": [WEATHER]})
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["stop_reason"] == "tool_calls" and body["output"] == ""
    [call] = body["tool_calls"]
    assert (call["name"], call["arguments"]) == ("get_weather", {"city": "Paris"})
    assert "session_id" not in body  # a parked run keeps no session
    assert runner.runs[0].tools.names == ("get_weather",)
    second = client.post(PROMPT, json={"backend": "claude", "tool_results": [
        {"call_id": call["id"], "output": "sunny"}]})
    assert second.status_code == 200, second.text
    assert second.json()["output"] == "results: sunny"
    assert second.json().get("stop_reason", "end") == "end"  # omitted when it is the default
    assert "tool_calls" not in second.json()
    assert len(runner.runs) == 1


def test_stream_has_tool_call_lines_then_done(client):
    """Streamed: the CLI's own lines, one `tool_call` line per call, then `done` with
    stop_reason tool_calls; the resumed stream ends with the run's own `done`."""
    first = client.post(PROMPT, json={**ASK, "tools": [WEATHER], "output_format": "stream-json"})
    assert first.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in first.text.splitlines()]
    assert [line["type"] for line in lines[-2:]] == ["tool_call", "done"]
    call = lines[-2]["content"]
    assert (call["name"], call["arguments"]) == ("get_weather", {"city": "Paris"})
    assert lines[-1]["content"]["stop_reason"] == "tool_calls"
    second = client.post(PROMPT, json={"backend": "claude", "output_format": "stream-json",
                                       "tool_results": [{"call_id": call["id"],
                                                         "output": "rain", "is_error": True}]})
    lines = [json.loads(line) for line in second.text.splitlines()]
    assert lines[-1]["type"] == "done" and lines[-1]["content"]["stop_reason"] == "end"
    assert "results: rain" in [line["content"].get("text") for line in lines]


def test_parallel_calls_need_every_result(client, runner):
    """Two calls at once come in one answer; one result alone is a 400 naming
    tool_results; both resume the run."""
    runner.script = [[("get_weather", {"city": "Paris"}), ("get_time", {})]]
    calls = client.post(PROMPT, json={**ASK, "tools": [WEATHER, TIME]}).json()["tool_calls"]
    assert sorted(c["name"] for c in calls) == ["get_time", "get_weather"]
    results = [{"call_id": c["id"], "output": c["name"]} for c in calls]
    partial = client.post(PROMPT, json={"backend": "claude", "tool_results": results[:1]})
    assert partial.status_code == 400 and partial.json()["field"] == "tool_results"
    done = client.post(PROMPT, json={"backend": "claude", "tool_results": results}).json()
    assert done["output"] == "results: get_weather, get_time"


def test_tool_choice_and_builtin_tools_reach_the_run(client, runner):
    """A named tool_choice becomes the instruction naming it; builtin_tools is passed on;
    tool_choice none is a plain run."""
    client.post(PROMPT, json={**ASK, "tools": [WEATHER], "tool_choice": "get_weather",
                              "builtin_tools": True})
    spec = runner.runs[-1]
    assert "'get_weather'" in spec.system_prompt and spec.tools.builtin_tools is True
    client.post(PROMPT, json={**ASK, "tools": [WEATHER], "tool_choice": "none"})
    assert runner.runs[-1].tools is None


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"tools": [WEATHER, WEATHER]}, "tools[1].name"),
        ({"tools": [{"name": "bad name"}]}, "tools[0].name"),
        ({"tools": [{"name": "t", "parameters": {"type": "object", "required": 1}}]},
         "tools[0].parameters"),
        ({"tools": [{"name": "t", "input_schema": {}}]}, "tools[0].input_schema"),
        ({"tools": [WEATHER], "tool_choice": "nope"}, "tool_choice"),
        ({"tool_results": [{"call_id": "call_x", "output": "r"}]}, "tool_results[0].call_id"),
        ({"tool_results": [{"output": "r"}]}, "tool_results[0].call_id"),
        ({"tools": [WEATHER], "session_id": "s"}, "session_id"),
        ({"tools": [WEATHER], "tool_results": [{"call_id": "c"}]}, "tool_results"),
    ],
)
@pytest.mark.parametrize("stream", [False, True])
def test_bad_input_is_a_problem_naming_the_field(client, runner, body, field, stream):
    """Bad tools, an unknown tool_choice, a result no run waits for: a problem+json 400
    naming the field, streamed or not; nothing runs."""
    fmt = {"output_format": "stream-json"} if stream else {}
    r = client.post(PROMPT, json={**ASK, **fmt, **body})
    assert r.status_code == 400, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["field"] == field
    assert runner.runs == []


@settings(max_examples=80, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(fields=native_tool_fields)
def test_arbitrary_tool_fields_are_answered_or_a_problem(client, runner, fields):
    """Any tools, tool_choice, builtin_tools and tool_results, well formed or not, are
    answered or refused with a problem+json 400 naming a field, never a server error."""
    runner.script = []
    r = client.post(PROMPT, json={**ASK, **fields})
    assert r.status_code in (200, 400), r.text
    if r.status_code == 400:
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["field"]


class _SlowAfterResults(FakeToolCallingRunner):
    """Thinks a while after getting the results before it says anything."""

    async def run(self, spec, on_event=None):
        async def quiet(event):
            if isinstance(event, ev.ToolResult):
                await anyio.sleep(0.5)
            if on_event is not None:
                await on_event(event)

        return await super().run(spec, quiet)


def test_a_resumed_stream_gets_heartbeats_while_the_cli_is_silent(tmp_path, bridge):
    """While the resumed CLI is silent, heartbeat lines keep the stream alive, before its
    own lines."""
    runner = _SlowAfterResults(bridge, [[("get_weather", {"city": "Paris"})]])
    config = Config(server=ServerConfig(default_workdir=str(tmp_path), heartbeat_secs=0.05))
    services = bootstrap(config, runner=runner, store=FakeSessionStore(), clock=FakeClock(),
                         ids=FakeIds(), tools=bridge)
    with TestClient(create_app(services)) as c:
        [call] = c.post(PROMPT, json={**ASK, "tools": [WEATHER]}).json()["tool_calls"]
        second = c.post(PROMPT, json={"backend": "claude", "output_format": "stream-json",
                                      "tool_results": [{"call_id": call["id"], "output": "x"}]})
    kinds = [json.loads(line)["type"] for line in second.text.splitlines()]
    assert kinds[0] == "heartbeat" and kinds[-1] == "done"
