"""Client tools over HTTP on fakes: the usage of answers that end in tool calls (OpenAI
and Anthropic, streamed and not), and Anthropic text blocks beside tool_result blocks."""

from __future__ import annotations

import json

import pytest
from starlette.testclient import TestClient

from clinvk.adapters.http.app import create_app
from clinvk.domain.config import Config, ServerConfig
from clinvk.domain.models import TokenUsage
from clinvk.entrypoints.bootstrap import bootstrap
from tests.fakes import (
    FakeClock,
    FakeIds,
    FakeSessionStore,
    FakeToolBridge,
    FakeToolCallingRunner,
)

OPENAI = "/openai/v1/chat/completions"
ANTHROPIC = "/anthropic/v1/messages"
WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}}}}
A_WEATHER = {"name": "get_weather", "input_schema": WEATHER["function"]["parameters"]}
ASK = [{"role": "user", "content": "weather?"}]


@pytest.fixture
def runner() -> FakeToolCallingRunner:
    bridge = FakeToolBridge()
    fake = FakeToolCallingRunner(bridge, [[("get_weather", {"city": "Paris"})]],
                                 so_far=[TokenUsage(input_tokens=10, output_tokens=2)])
    fake.usage = TokenUsage(input_tokens=25, output_tokens=6)
    return fake


@pytest.fixture
def client(tmp_path, runner):
    config = Config(server=ServerConfig(default_workdir=str(tmp_path), heartbeat_secs=5))
    services = bootstrap(config, runner=runner, store=FakeSessionStore(), clock=FakeClock(),
                         ids=FakeIds(), tools=runner.bridge)
    with TestClient(create_app(services)) as c:
        yield c


def _sse_data(text: str) -> list:
    return [json.loads(line[6:]) for line in text.splitlines()
            if line.startswith("data: ") and line != "data: [DONE]"]


def test_openai_tool_call_answer_reports_the_usage_so_far(client):
    """The tool_calls answer's usage is what the CLI reported before its pause; the final
    answer's is the rest of the run, so the two add up to the run's usage."""
    first = client.post(OPENAI, json={"model": "claude", "messages": ASK, "tools": [WEATHER]})
    body = first.json()
    assert body["choices"][0]["finish_reason"] == "tool_calls"
    assert (body["usage"]["prompt_tokens"], body["usage"]["completion_tokens"]) == (10, 2)
    [call] = body["choices"][0]["message"]["tool_calls"]
    second = client.post(OPENAI, json={"model": "claude", "tools": [WEATHER], "messages": [
        *ASK, body["choices"][0]["message"],
        {"role": "tool", "tool_call_id": call["id"], "content": "sunny"}]}).json()
    assert (second["usage"]["prompt_tokens"], second["usage"]["completion_tokens"]) == (15, 4)


def test_openai_streamed_tool_calls_carry_usage_with_include_usage(client):
    """stream_options.include_usage: the last chunk of a tool-calls stream has the usage
    so far."""
    text = client.post(OPENAI, json={"model": "claude", "messages": ASK, "tools": [WEATHER],
                                     "stream": True,
                                     "stream_options": {"include_usage": True}}).text
    chunks = _sse_data(text)
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"
    assert chunks[-1]["choices"] == []
    assert (chunks[-1]["usage"]["prompt_tokens"], chunks[-1]["usage"]["total_tokens"]) \
        == (10, 12)


def test_anthropic_tool_use_answer_reports_the_usage_so_far(client):
    """stop_reason tool_use with the usage so far, streamed (message_delta) and not."""
    body = client.post(ANTHROPIC, json={"model": "claude", "max_tokens": 50, "messages": ASK,
                                        "tools": [A_WEATHER]}).json()
    assert body["stop_reason"] == "tool_use"
    assert body["usage"] == {"input_tokens": 10, "output_tokens": 2}


def test_anthropic_streamed_tool_use_reports_the_usage_so_far(client):
    """The tool_use stream's message_delta carries the usage so far."""
    text = client.post(ANTHROPIC, json={"model": "claude", "max_tokens": 50, "messages": ASK,
                                        "tools": [A_WEATHER], "stream": True}).text
    [delta] = [d for d in _sse_data(text) if d["type"] == "message_delta"]
    assert delta["delta"]["stop_reason"] == "tool_use"
    assert delta["usage"] == {"input_tokens": 10, "output_tokens": 2}


def test_anthropic_text_beside_tool_results_reaches_the_run(client):
    """Text blocks after the tool_result blocks of the user message (Claude Code's
    <system-reminder>s, a user's remark) come after the last result's text in what the
    parked run gets."""
    first = client.post(ANTHROPIC, json={"model": "claude", "max_tokens": 50, "messages": ASK,
                                         "tools": [A_WEATHER]}).json()
    [use] = [b for b in first["content"] if b["type"] == "tool_use"]
    second = client.post(ANTHROPIC, json={
        "model": "claude", "max_tokens": 50, "tools": [A_WEATHER], "messages": [
            *ASK, {"role": "assistant", "content": first["content"]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": use["id"], "content": "sunny"},
                {"type": "text", "text": "<system-reminder>be brief</system-reminder>"},
                {"type": "text", "text": "and in Celsius"}]}]})
    assert second.status_code == 200, second.text
    assert second.json()["content"][0]["text"] == (
        "results: sunny\n\n<system-reminder>be brief</system-reminder>\n\nand in Celsius")


def test_native_and_responses_tool_call_answers_report_the_usage_so_far(client):
    """The native API's tool_calls answer (token_usage) and the Responses API's function
    calls (usage) report the usage so far too."""
    native = client.post("/api/v1/prompt", json={
        "backend": "claude", "prompt": "weather?",
        "tools": [{"name": "get_weather", "parameters": WEATHER["function"]["parameters"]}]})
    assert native.json()["stop_reason"] == "tool_calls"
    assert native.json()["token_usage"]["input_tokens"] == 10
    assert native.json()["token_usage"]["output_tokens"] == 2
    responses = client.post("/openai/v1/responses", json={
        "model": "claude", "input": "weather?",
        "tools": [{"type": "function", "name": "get_weather",
                   "parameters": WEATHER["function"]["parameters"]}]}).json()
    assert [o["type"] for o in responses["output"]] == ["function_call"]
    assert (responses["usage"]["input_tokens"], responses["usage"]["output_tokens"]) == (10, 2)


def test_native_stream_done_lines_report_each_answers_part(client):
    """Streamed native answers: the tool_calls `done` line has the usage so far, the
    resumed stream's `done` the rest of the run's."""
    tools = [{"name": "get_weather", "parameters": WEATHER["function"]["parameters"]}]
    first = client.post("/api/v1/prompt", json={
        "backend": "claude", "prompt": "weather?", "tools": tools,
        "output_format": "stream-json"}).text
    lines = [json.loads(line) for line in first.splitlines() if line.strip()]
    [call] = [x["content"] for x in lines if x["type"] == "tool_call"]
    [done] = [x["content"] for x in lines if x["type"] == "done"]
    assert (done["usage"]["input_tokens"], done["usage"]["output_tokens"]) == (10, 2)
    second = client.post("/api/v1/prompt", json={
        "backend": "claude", "output_format": "stream-json",
        "tool_results": [{"call_id": call["id"], "output": "sunny"}]}).text
    lines = [json.loads(line) for line in second.splitlines() if line.strip()]
    [done] = [x["content"] for x in lines if x["type"] == "done"]
    assert (done["usage"]["input_tokens"], done["usage"]["output_tokens"]) == (15, 4)
