"""Client tools on the Responses API and the native API through the real CLIs against a
real `clinvk serve`: the official openai SDK's `responses.create(..., tools=[...])` gets
the model's function_call while the CLI waits in it, and the function_call_output
(after the whole input, or with previous_response_id) resumes the CLI, whose model
quotes it; plain httpx does the same with native `tools` / `tool_results`. One backend
per shape, so the three CLIs are covered without tripling the run."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from tests.support.model_double import ModelDouble, generation_requests
from tests.support.server import ClinvkServer

pytestmark = pytest.mark.real

WEATHER = {"type": "function", "name": "get_weather", "description": "The weather of a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                          "required": ["city"]}, "strict": False}
NATIVE_WEATHER = {"name": "get_weather", "description": "The weather of a city",
                  "parameters": WEATHER["parameters"]}
ASK = "What is the weather in Paris?"
#: The model name of each backend, and the tool name its model sees (claude and codex:
#: mcp__client__…, codex as a namespace; gemini: mcp_client_…). codex's default model
#: runs in code mode, so codex runs name one that is offered tools directly.
MODEL = {"claude": "claude", "codex": "codex/gpt-5", "gemini": "gemini"}
SEEN = {"claude": "mcp__client__get_weather", "codex": "mcp__client__get_weather",
        "gemini": "mcp_client_get_weather"}


@pytest.fixture(scope="module")
def server(model_double: ModelDouble, tmp_path_factory):
    """A clinvk serve of its own, so the processes it leaves (none) are this module's."""
    srv = ClinvkServer(model_double.url, tmp_path_factory.mktemp("responses-tools")).start()
    yield srv
    srv.stop()


@pytest.fixture
def oai(server):
    with openai.OpenAI(base_url=server.url + "/openai/v1", api_key="x", max_retries=0,
                       timeout=90) as client:
        yield client


def _streamed(stream) -> tuple[list[str], object]:
    kinds, final = [], None
    for event in stream:
        kinds.append(event.type)
        if event.type == "response.completed":
            final = event.response
    return kinds, final


@pytest.mark.parametrize(("backend", "stream", "previous"), [
    ("claude", False, True), ("claude", True, False), ("codex", False, False),
    ("gemini", True, True)])
def test_responses_round_trip(oai, server, model_double, backend, stream, previous):
    """The answer is a completed response whose output is the model's function_call
    (streamed: output_item.added, function_call_arguments.delta/.done, output_item.done)
    while the CLI waits in it; its function_call_output (with previous_response_id, or
    after the whole input) resumes the same CLI, whose model quotes it; a later turn with
    previous_response_id replays the kept conversation."""
    model_double.set(tool_use={"name": SEEN[backend], "input": {"city": "Paris"}})
    ask = [{"role": "user", "content": ASK}]
    if stream:
        kinds, first = _streamed(oai.responses.create(model=MODEL[backend], input=ask,
                                                      tools=[WEATHER], stream=True))
        assert kinds[-5:] == ["response.output_item.added",
                              "response.function_call_arguments.delta",
                              "response.function_call_arguments.done",
                              "response.output_item.done", "response.completed"]
    else:
        first = oai.responses.create(model=MODEL[backend], input=ask, tools=[WEATHER])
    assert first.status == "completed"
    [call] = [item for item in first.output if item.type == "function_call"]
    assert (call.name, json.loads(call.arguments)) == ("get_weather", {"city": "Paris"})
    assert server.cli_pids(), "the CLI should wait inside the tool call"

    output = {"type": "function_call_output", "call_id": call.call_id, "output": "sunny, 21 C"}
    if previous:
        more = {"previous_response_id": first.id, "input": [output]}
    else:
        more = {"input": [*ask, *[i.model_dump(exclude_none=True) for i in first.output],
                          output]}
    if stream:
        raw = oai.responses.with_raw_response.create(model=MODEL[backend], tools=[WEATHER],
                                                     stream=True, **more)
        kinds, second = _streamed(raw.parse())
        assert "response.output_text.delta" in kinds
    else:
        raw = oai.responses.with_raw_response.create(model=MODEL[backend], tools=[WEATHER],
                                                     **more)
        second = raw.parse()
    assert "x-clinvk-tool-replay" not in raw.headers
    assert second.status == "completed" and "sunny, 21 C" in second.output_text
    sent = json.dumps(generation_requests(model_double.requests())[-1]["body"])
    assert "sunny, 21 C" in sent  # the CLI gave its model the result
    assert server.wait_no_cli() == []
    if previous and not stream:
        # The conversation was kept: the next turn continues it (a fresh run replaying
        # the question, the call and its result).
        model_double.set(tool_use=None, reply="take an umbrella")
        third = oai.responses.create(model=MODEL[backend], previous_response_id=second.id,
                                     input="and tomorrow?")
        assert third.output_text == "take an umbrella"
        prompt = json.dumps(generation_requests(model_double.requests())[-1]["body"])
        for text in (ASK, call.call_id, "sunny, 21 C", "and tomorrow?"):
            assert text in prompt
        assert server.wait_no_cli() == []


@pytest.mark.parametrize("stream", [False, True])
def test_native_round_trip(server, model_double, stream):
    """Native `tools`: the answer carries the call (non-streamed: `tool_calls` and
    stop_reason tool_calls; streamed: a `tool_call` line) while claude waits; a request
    with `tool_results` resumes it and its model quotes the result."""
    model_double.set(tool_use={"name": SEEN["claude"], "input": {"city": "Oslo"}})
    body = {"backend": "claude", "prompt": ASK, "tools": [NATIVE_WEATHER]}
    with httpx.Client(base_url=server.url + "/api/v1", timeout=90) as http:
        if stream:
            first = http.post("/prompt", json={**body, "output_format": "stream-json"})
            lines = [json.loads(line) for line in first.text.splitlines()]
            [call] = [line["content"] for line in lines if line["type"] == "tool_call"]
            assert lines[-1]["type"] == "done"
            assert lines[-1]["content"]["stop_reason"] == "tool_calls"
        else:
            first = http.post("/prompt", json=body)
            assert first.status_code == 200, first.text
            assert first.json()["stop_reason"] == "tool_calls"
            [call] = first.json()["tool_calls"]
        assert (call["name"], call["arguments"]) == ("get_weather", {"city": "Oslo"})
        assert server.cli_pids(), "claude should wait inside the tool call"
        second = http.post("/prompt", json={"backend": "claude", "tool_results": [
            {"call_id": call["id"], "output": "snow"}]})
        assert second.status_code == 200, second.text
        assert second.json()["output"] == "snow" and "tool_calls" not in second.json()
    assert server.wait_no_cli() == []
