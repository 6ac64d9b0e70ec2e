"""Client tools over HTTP on fakes: the OpenAI and Anthropic wire shapes of tool calls
(streamed and not), resuming by call id, parallel calls, the replay, and the 400s."""

from __future__ import annotations

import json

import pytest

from tests.http import tool_fixtures

OPENAI = "/openai/v1/chat/completions"
ANTHROPIC = "/anthropic/v1/messages"
WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}}}}
TIME = {"type": "function", "function": {"name": "get_time",
                                         "parameters": {"type": "object"}}}
A_WEATHER = {"name": "get_weather", "input_schema": WEATHER["function"]["parameters"]}
ASK = [{"role": "user", "content": "weather?"}]

# The shared client-tools fixtures (tests/http/tool_fixtures.py).
bridge, runner, client = tool_fixtures.bridge, tool_fixtures.runner, tool_fixtures.client


def _sse_data(text: str) -> list:
    return [json.loads(line[6:]) for line in text.splitlines()
            if line.startswith("data: ") and line != "data: [DONE]"]


def test_openai_answer_is_the_call_and_the_result_resumes(client, runner):
    """finish_reason tool_calls with the call (id, name, JSON arguments); the `tool`
    message with that id resumes the run, whose answer quotes the result."""
    first = client.post(OPENAI, json={"model": "claude", "messages": ASK, "tools": [WEATHER]})
    assert first.status_code == 200, first.text
    choice = first.json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    [call] = choice["message"]["tool_calls"]
    assert call["type"] == "function" and call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == {"city": "Paris"}
    assert len(runner.runs) == 1 and runner.runs[0].tools is not None
    second = client.post(OPENAI, json={"model": "claude", "tools": [WEATHER], "messages": [
        *ASK, choice["message"], {"role": "tool", "tool_call_id": call["id"], "content": "sunny"}]})
    assert second.status_code == 200, second.text
    assert "x-clinvk-tool-replay" not in second.headers
    answer = second.json()["choices"][0]
    assert (answer["finish_reason"], answer["message"]["content"]) == ("stop", "results: sunny")
    assert len(runner.runs) == 1  # the same run went on


def test_openai_stream_carries_the_call_as_tool_call_deltas(client):
    """Streamed: a chunk with delta.tool_calls (index, id, type, name, arguments), then
    finish_reason tool_calls and [DONE]; the resumed stream ends with stop."""
    first = client.post(OPENAI, json={"model": "claude", "messages": ASK, "tools": [WEATHER],
                                      "stream": True})
    assert first.text.rstrip().endswith("data: [DONE]")
    chunks = _sse_data(first.text)
    deltas = [d for c in chunks for ch in c["choices"] for d in ch["delta"].get("tool_calls", [])]
    [delta] = deltas
    assert delta["index"] == 0 and delta["function"]["name"] == "get_weather"
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"
    second = client.post(OPENAI, json={"model": "claude", "tools": [WEATHER], "stream": True,
                                       "messages": [*ASK, {"role": "assistant", "tool_calls": [
                                           {k: delta[k] for k in ("id", "type", "function")}]},
                                           {"role": "tool", "tool_call_id": delta["id"],
                                            "content": "rain"}]})
    chunks = _sse_data(second.text)
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks
                   if c["choices"]) == "results: rain"
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


def test_anthropic_answer_is_tool_use_and_tool_result_resumes(client):
    """stop_reason tool_use with a tool_use block; the tool_result block resumes."""
    body = {"model": "claude", "max_tokens": 100, "messages": ASK, "tools": [A_WEATHER]}
    first = client.post(ANTHROPIC, json=body).json()
    assert first["stop_reason"] == "tool_use"
    [use] = [b for b in first["content"] if b["type"] == "tool_use"]
    assert (use["name"], use["input"]) == ("get_weather", {"city": "Paris"})
    second = client.post(ANTHROPIC, json={**body, "messages": [
        *ASK, {"role": "assistant", "content": first["content"]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use["id"],
                                      "content": [{"type": "text", "text": "fog"}]}]}]}).json()
    assert second["stop_reason"] == "end_turn"
    assert second["content"] == [{"type": "text", "text": "results: fog"}]


def test_anthropic_stream_has_tool_use_blocks_in_anthropics_order(client):
    """Streamed: message_start, the (empty) text block, a tool_use block with its
    input_json_delta, message_delta stop_reason tool_use, message_stop."""
    body = {"model": "claude", "max_tokens": 100, "messages": ASK, "tools": [A_WEATHER],
            "stream": True}
    events = _sse_data(client.post(ANTHROPIC, json=body).text)
    kinds = [e["type"] for e in events]
    assert kinds == ["message_start", "content_block_start", "content_block_stop",
                     "content_block_start", "content_block_delta", "content_block_stop",
                     "message_delta", "message_stop"]
    start = events[3]
    assert start["index"] == 1 and start["content_block"]["type"] == "tool_use"
    assert json.loads(events[4]["delta"]["partial_json"]) == {"city": "Paris"}
    assert events[6]["delta"]["stop_reason"] == "tool_use"


def test_parallel_calls_come_together_and_need_every_result(client, runner):
    """Two calls made at once are one answer; a request with one result is a 400 naming
    messages; both results resume the run."""
    runner.script = [[("get_weather", {"city": "Paris"}), ("get_time", {})]]
    first = client.post(OPENAI, json={"model": "claude", "messages": ASK,
                                      "tools": [WEATHER, TIME]}).json()
    message = first["choices"][0]["message"]
    assert sorted(c["function"]["name"] for c in message["tool_calls"]) == [
        "get_time", "get_weather"]
    results = [{"role": "tool", "tool_call_id": c["id"], "content": c["function"]["name"]}
               for c in message["tool_calls"]]
    partial = client.post(OPENAI, json={"model": "claude", "tools": [WEATHER, TIME],
                                        "messages": [*ASK, message, results[0]]})
    assert partial.status_code == 400 and partial.json()["error"]["param"] == "messages"
    done = client.post(OPENAI, json={"model": "claude", "tools": [WEATHER, TIME],
                                     "messages": [*ASK, message, *results]}).json()
    assert done["choices"][0]["message"]["content"] == "results: get_weather, get_time"


def test_a_result_whose_run_is_gone_is_replayed(client, runner):
    """A result for a call of the conversation that no parked run waits for starts a
    fresh run with the whole conversation (call and result in its prompt), and says so."""
    runner.script = []
    call = {"id": "call_from_before", "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'}}
    r = client.post(OPENAI, json={"model": "claude", "tools": [WEATHER], "messages": [
        *ASK, {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_from_before", "content": "snow"}]})
    assert r.status_code == 200 and r.headers["x-clinvk-tool-replay"] == "1"
    prompt = runner.runs[-1].prompt
    assert "call_from_before" in prompt and "snow" in prompt and "weather?" in prompt


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"tools": [WEATHER, WEATHER]}, "tools[1].function.name"),
        ({"tools": [{"type": "function", "function": {"name": "bad name"}}]},
         "tools[0].function.name"),
        ({"tools": [{"type": "function", "function": {
            "name": "t", "parameters": {"type": "object", "properties": 3}}}]},
         "tools[0].function.parameters"),
        ({"tools": [WEATHER], "tool_choice": {"type": "function",
                                              "function": {"name": "nope"}}}, "tool_choice"),
        ({"tools": [WEATHER], "messages": [*ASK, {"role": "tool", "tool_call_id": "call_x",
                                                  "content": "r"}]},
         "messages[1].tool_call_id"),
        ({"tools": [{"type": "web_search"}]}, "tools[0]"),
    ],
)
def test_openai_bad_tools_are_400s_naming_the_param(client, runner, body, param):
    """Bad tools, an unknown tool_choice and a result for no call are OpenAI 400s whose
    param names the field; nothing runs."""
    r = client.post(OPENAI, json={"model": "claude", "messages": ASK, **body})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param
    assert runner.runs == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"tools": [A_WEATHER, A_WEATHER]}, "tools.1.name"),
        ({"tools": [{"name": "t", "input_schema": {"type": "object", "required": 1}}]},
         "tools.0.input_schema"),
        ({"tools": [A_WEATHER], "tool_choice": {"type": "tool", "name": "nope"}},
         "tool_choice"),
        ({"tools": [A_WEATHER], "messages": [*ASK, {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_x", "content": "r"}]}]},
         "messages.1.content.0.tool_use_id"),
    ],
)
def test_anthropic_bad_tools_are_400s_naming_the_field(client, runner, body, field):
    """The same refusals in Anthropic's envelope, the message naming the field."""
    r = client.post(ANTHROPIC, json={"model": "claude", "max_tokens": 10, "messages": ASK,
                                     **body})
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error" and field in error["message"]
    assert runner.runs == []


def test_a_user_turn_after_the_results_gets_a_fresh_run(client, runner):
    """A parked run can only be given results: when the client adds a user message after
    them, a fresh run answers the whole conversation (and says it is a replay)."""
    first = client.post(OPENAI, json={"model": "claude", "messages": ASK,
                                      "tools": [WEATHER]}).json()
    message = first["choices"][0]["message"]
    call_id = message["tool_calls"][0]["id"]
    runner.script = []
    r = client.post(OPENAI, json={"model": "claude", "tools": [WEATHER], "messages": [
        *ASK, message, {"role": "tool", "tool_call_id": call_id, "content": "sunny"},
        {"role": "user", "content": "and tomorrow?"}]})
    assert r.status_code == 200 and r.headers["x-clinvk-tool-replay"] == "1"
    assert len(runner.runs) == 2 and "and tomorrow?" in runner.runs[-1].prompt
