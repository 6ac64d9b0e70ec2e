"""Agent frameworks with client tools against a real `clinvk serve`, the real CLIs and the
model double: LangChain `bind_tools` with its agent loop (ChatOpenAI on chat completions,
ChatAnthropic streamed) and the Vercel AI SDK's multi-step `generateText` / `streamText`
with tools (openai.chat, @ai-sdk/anthropic). In each, the model calls the client's tool,
the library runs it, sends the result back, and the final answer quotes it."""

from __future__ import annotations

from functools import reduce
from operator import add

import anthropic
import pytest
from langchain_anthropic import ChatAnthropic
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI

from tests.support.model_double import generation_requests
from tests.support.node_sdks import vercel_ai

pytestmark = pytest.mark.real

ASK = "What is the weather in Paris?"


@tool
def get_weather(city: str) -> str:
    """The weather of a city."""
    return f"sunny in {city}"


def _double_calls(model_double, name: str, city: str = "Paris") -> None:
    model_double.set(tool_use={"name": name, "input": {"city": city}})


def _agent_loop(llm, messages: list) -> tuple[list[AIMessage], AIMessage]:
    """LangChain's tool loop: run every tool call, send the results, until text comes."""
    calls: list[AIMessage] = []
    for _ in range(3):
        answer = llm.invoke(messages)
        if not answer.tool_calls:
            return calls, answer
        calls.append(answer)
        messages += [answer, *(get_weather.invoke(call) for call in answer.tool_calls)]
    raise AssertionError(f"no final answer after 3 rounds: {messages}")


def test_langchain_openai_bind_tools_agent_loop_claude(clinvk_server, model_double):
    """ChatOpenAI.bind_tools on chat completions with claude: the AIMessage carries the
    get_weather call (with the usage claude reported for it), the loop runs the tool and
    sends its ToolMessage, and claude's model quotes the result."""
    _double_calls(model_double, "mcp__client__get_weather")
    model_double.set(input_tokens=13)
    llm = ChatOpenAI(base_url=clinvk_server.url + "/openai/v1", api_key="not-needed",
                     model="claude", max_retries=0, timeout=120).bind_tools([get_weather])
    [asked], final = _agent_loop(llm, [HumanMessage(ASK)])
    [call] = asked.tool_calls
    assert (call["name"], call["args"]) == ("get_weather", {"city": "Paris"})
    assert asked.usage_metadata["input_tokens"] == 13
    assert asked.usage_metadata["output_tokens"] > 0
    assert final.content == "sunny in Paris"
    assert clinvk_server.wait_no_cli() == []


def test_langchain_anthropic_stream_with_tools_codex_default_model(clinvk_server, model_double):
    """ChatAnthropic.bind_tools(...).stream() with codex's default model: the call comes
    as tool_call_chunks that add up to the get_weather call, offered to codex's model as
    a function of the bridge's namespace (not only inside codex's `exec`); the streamed
    continuation with the ToolMessage quotes the result."""
    _double_calls(model_double, "mcp__client__get_weather", city="Oslo")
    llm = ChatAnthropic(base_url=clinvk_server.url + "/anthropic", api_key="not-needed",
                        model="codex", max_retries=0, timeout=120).bind_tools([get_weather])
    messages: list = [HumanMessage("What is the weather in Oslo?")]
    chunks = list(llm.stream(messages))
    assert any(c.tool_call_chunks for c in chunks)
    asked = reduce(add, chunks)
    [call] = asked.tool_calls
    assert (call["name"], call["args"]) == ("get_weather", {"city": "Oslo"})
    offered = generation_requests(model_double.requests())[-1]["body"]
    assert "exec" not in str(offered.get("tools")) and "mcp__client" in str(offered)
    messages += [asked, get_weather.invoke(call)]
    text = "".join(c.text for c in llm.stream(messages))
    assert "sunny in Oslo" in text
    assert clinvk_server.wait_no_cli() == []


WEATHER_TOOL = {"get_weather": {"description": "The weather of a city",
                                "parameters": {"city": "string"}, "result": "sunny, 21 C"}}


def test_vercel_openai_chat_generate_text_with_tools_claude(clinvk_server, model_double):
    """generateText through openai.chat with a zod tool and stopWhen(stepCountIs(5)):
    step 1 ends in claude's get_weather call, the SDK runs `execute`, step 2 is claude's
    answer quoting the result; each step's usage is its own model call's (the double
    reports 9 input tokens per call), so the SDK's total is claude's."""
    _double_calls(model_double, "mcp__client__get_weather")
    model_double.set(input_tokens=9)
    out = vercel_ai(clinvk_server.url, provider="openai.chat", model="claude", prompt=ASK,
                    tools=WEATHER_TOOL)
    assert "error" not in out, out
    assert out["executed"] == [{"name": "get_weather", "input": {"city": "Paris"}}]
    first, second = out["steps"]
    assert first["finishReason"] == "tool-calls"
    assert [c["toolName"] for c in first["toolCalls"]] == ["get_weather"]
    assert first["toolResults"][0]["output"] == "sunny, 21 C"
    assert second["finishReason"] == "stop" and out["text"] == "sunny, 21 C"
    assert [s["usage"]["inputTokens"] for s in out["steps"]] == [9, 9]
    assert clinvk_server.wait_no_cli() == []


def test_vercel_anthropic_stream_text_with_tools_gemini(clinvk_server, model_double):
    """streamText through @ai-sdk/anthropic with gemini: the stream shows the tool call,
    its result, then the second step, whose text quotes the result."""
    _double_calls(model_double, "mcp_client_get_weather", city="Rome")
    out = vercel_ai(clinvk_server.url, provider="anthropic", model="gemini",
                    prompt="What is the weather in Rome?", tools=WEATHER_TOOL, mode="stream")
    assert "error" not in out, out
    assert out["executed"] == [{"name": "get_weather", "input": {"city": "Rome"}}]
    assert out["parts"] == ["tool-call", "tool-result", "finish-step", "finish-step"]
    assert [s["finishReason"] for s in out["steps"]] == ["tool-calls", "stop"]
    assert "sunny, 21 C" in out["text"]
    assert clinvk_server.wait_no_cli() == []


def test_anthropic_usage_and_text_beside_the_result_claude(clinvk_server, model_double):
    """The anthropic SDK with claude: the tool_use answer reports the usage claude had
    reported (the double's 17 input tokens); text blocks sent beside the tool_result
    reach claude's model after the result's text, in the same tool result."""
    _double_calls(model_double, "mcp__client__get_weather")
    model_double.set(input_tokens=17)
    tools = [{"name": "get_weather", "description": "The weather of a city",
              "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}]
    with anthropic.Anthropic(base_url=clinvk_server.url + "/anthropic", api_key="x",
                             max_retries=0, timeout=120) as client:
        messages = [{"role": "user", "content": ASK}]
        first = client.messages.create(model="claude", max_tokens=512, messages=messages,
                                       tools=tools)
        assert first.stop_reason == "tool_use" and first.usage.input_tokens == 17
        [use] = [b for b in first.content if b.type == "tool_use"]
        messages += [{"role": "assistant", "content": [b.model_dump() for b in first.content]},
                     {"role": "user", "content": [
                         {"type": "tool_result", "tool_use_id": use.id, "content": "snow"},
                         {"type": "text", "text": "Answer in one word."}]}]
        second = client.messages.create(model="claude", max_tokens=512, messages=messages,
                                        tools=tools)
    assert second.content[0].text == "snow\n\nAnswer in one word."
    last = generation_requests(model_double.requests())[-1]["body"]["messages"][-1]
    [result] = [b for b in last["content"] if b.get("type") == "tool_result"]
    assert result["content"] == [{"type": "text", "text": "snow\n\nAnswer in one word."}]
    assert clinvk_server.wait_no_cli() == []
