"""The model double's `tool_use` knob as a list (calls made at once) and with a Responses
namespace (how codex offers an MCP server's tools)."""

from __future__ import annotations

import json

import httpx

from tests.support.model_double import ModelDouble

CALLS = [{"name": "get_weather", "input": {"city": "Paris"}},
         {"name": "get_time", "input": {"zone": "CET"}}]


def _events(response: httpx.Response) -> list[dict]:
    return [json.loads(line[6:]) for line in response.text.splitlines()
            if line.startswith("data: ")]


def test_anthropic_gets_every_call_in_one_message():
    """A list makes one message with a tool_use block per call, in order."""
    with ModelDouble(tool_use=CALLS) as double:
        tools = [{"name": c["name"], "input_schema": {"type": "object"}} for c in CALLS]
        events = _events(httpx.post(double.url + "/v1/messages", timeout=30, json={
            "model": "m", "max_tokens": 5, "stream": True, "tools": tools,
            "messages": [{"role": "user", "content": "go"}]}))
    starts = [e for e in events if e["type"] == "content_block_start"]
    assert [(e["index"], e["content_block"]["name"]) for e in starts] == [
        (0, "get_weather"), (1, "get_time")]
    inputs = [json.loads(e["delta"]["partial_json"]) for e in events
              if e["type"] == "content_block_delta"]
    assert inputs == [c["input"] for c in CALLS]


def test_a_call_is_made_only_when_every_tool_of_the_list_is_offered():
    """A request offering only some of the listed tools gets the usual text."""
    with ModelDouble(tool_use=CALLS, reply="plain") as double:
        events = _events(httpx.post(double.url + "/v1/messages", timeout=30, json={
            "model": "m", "max_tokens": 5, "stream": True,
            "tools": [{"name": "get_weather", "input_schema": {"type": "object"}}],
            "messages": [{"role": "user", "content": "go"}]}))
    assert "".join(e["delta"]["text"] for e in events
                   if e["type"] == "content_block_delta") == "plain"


def test_responses_namespace_tools_are_called_with_their_namespace():
    """`mcp__client__get_weather` asks for tool get_weather of namespace mcp__client: the
    function_call item carries both; the outputs the next input ends with are the reply."""
    knob = [{"name": "mcp__client__" + c["name"], "input": c["input"]} for c in CALLS]
    namespace = {"type": "namespace", "name": "mcp__client", "tools": [
        {"type": "function", "name": c["name"]} for c in CALLS]}
    with ModelDouble(tool_use=knob) as double:
        events = _events(httpx.post(double.url + "/v1/responses", timeout=30, json={
            "model": "m", "stream": True, "tools": [namespace],
            "input": [{"role": "user", "content": "go"}]}))
        done = [e["item"] for e in events if e["type"] == "response.output_item.done"]
        assert [(i["namespace"], i["name"], json.loads(i["arguments"])) for i in done] == [
            ("mcp__client", c["name"], c["input"]) for c in CALLS]
        outputs = [{"type": "function_call_output", "call_id": i["call_id"], "output": out}
                   for i, out in zip(done, ["sunny", " noon"], strict=True)]
        events = _events(httpx.post(double.url + "/v1/responses", timeout=30, json={
            "model": "m", "stream": True, "tools": [namespace],
            "input": [{"role": "user", "content": "go"}, *done, *outputs]}))
    text = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    assert text == "sunny noon"


def test_gemini_gets_a_function_call_part_per_call():
    """Gemini gets one candidate whose parts call each function."""
    with ModelDouble(tool_use=CALLS) as double:
        body = httpx.post(double.url + "/v1beta/models/g:generateContent", timeout=30, json={
            "contents": [{"role": "user", "parts": [{"text": "go"}]}],
            "tools": [{"functionDeclarations": [{"name": c["name"]} for c in CALLS]}]}).json()
    parts = body["candidates"][0]["content"]["parts"]
    assert [p["functionCall"] for p in parts] == [
        {"name": c["name"], "args": c["input"]} for c in CALLS]
