"""The model double's `tool_use` knob: an Anthropic call that offers the tool is answered
with a call to it, and the call carrying its result with the result's text."""

from __future__ import annotations

import json

import httpx

from tests.support.model_double import ModelDouble

TOOL = {"name": "mcp__clinvk__clinvk_prompt", "input": {"backend": "codex", "prompt": "p"}}


def _events(response: httpx.Response) -> list[dict]:
    return [json.loads(line[6:]) for line in response.text.splitlines()
            if line.startswith("data: ")]


def _call(double: ModelDouble, messages: list, tools: list) -> httpx.Response:
    return httpx.post(double.url + "/v1/messages", timeout=30, json={
        "model": "m", "max_tokens": 5, "stream": True, "messages": messages, "tools": tools})


def test_an_offered_tool_is_called_and_its_result_answered():
    """The first call gets a tool_use block with the knob's input (stop_reason tool_use);
    the call whose last message holds the tool_result is answered with that text."""
    with ModelDouble(tool_use=TOOL) as double:
        tools = [{"name": TOOL["name"], "input_schema": {"type": "object"}}]
        first = _events(_call(double, [{"role": "user", "content": "ask codex"}], tools))
        block = first[1]["content_block"]
        assert block["type"] == "tool_use" and block["name"] == TOOL["name"]
        assert json.loads(first[2]["delta"]["partial_json"]) == TOOL["input"]
        assert first[4]["delta"]["stop_reason"] == "tool_use"
        result = [{"type": "tool_result", "tool_use_id": block["id"],
                   "content": [{"type": "text", "text": "codex: fine"}]}]
        second = _events(_call(double, [{"role": "user", "content": "ask codex"},
                                        {"role": "assistant", "content": [block]},
                                        {"role": "user", "content": result}], tools))
        text = "".join(e["delta"]["text"] for e in second
                       if e["type"] == "content_block_delta")
        assert text == "codex: fine"


def test_calls_that_do_not_offer_the_tool_get_the_usual_reply():
    """Side calls without the tool (titles, summaries) are answered as without the knob."""
    with ModelDouble(tool_use=TOOL, reply="plain") as double:
        events = _events(_call(double, [{"role": "user", "content": "hi"}], []))
    assert "".join(e["delta"]["text"] for e in events
                   if e["type"] == "content_block_delta") == "plain"


def test_openai_and_gemini_calls_get_their_own_function_calls():
    """The Responses API gets a function_call item, Gemini a functionCall part; the call
    after the function's output is answered with that output."""
    name = TOOL["name"]
    with ModelDouble(tool_use=TOOL) as double:
        first = httpx.post(double.url + "/v1/responses", timeout=30, json={
            "model": "m", "stream": True, "input": [{"role": "user", "content": "hi"}],
            "tools": [{"type": "function", "name": name}]})
        done = [e for e in _events(first) if e["type"] == "response.output_item.done"]
        item = done[0]["item"]
        assert (item["type"], item["name"]) == ("function_call", name)
        assert json.loads(item["arguments"]) == TOOL["input"]
        second = httpx.post(double.url + "/v1/responses", timeout=30, json={
            "model": "m", "stream": True, "tools": [{"type": "function", "name": name}],
            "input": [item, {"type": "function_call_output", "call_id": item["call_id"],
                             "output": "codex: ok"}]})
        assert "".join(e["delta"] for e in _events(second)
                       if e["type"] == "response.output_text.delta") == "codex: ok"

        path = "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
        tools = [{"functionDeclarations": [{"name": name}]}]
        call = _events(httpx.post(double.url + path, timeout=30, json={
            "contents": [{"role": "user", "parts": [{"text": "hi"}]}], "tools": tools}))
        part = call[0]["candidates"][0]["content"]["parts"][0]["functionCall"]
        assert part == {"name": name, "args": TOOL["input"]}
        answer = _events(httpx.post(double.url + path, timeout=30, json={"tools": tools,
            "contents": [{"role": "model", "parts": [{"functionCall": part}]},
                         {"role": "user", "parts": [{"functionResponse": {
                             "name": name, "response": {"output": "gemini: ok"}}}]}]}))
        text = "".join(p["text"] for c in answer for p in c["candidates"][0]["content"]["parts"])
        assert json.loads(text) == {"output": "gemini: ok"}
