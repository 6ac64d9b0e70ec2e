"""LangChain (ChatOpenAI, ChatAnthropic) and the Vercel AI SDK against a real `clinvk serve`,
the real CLIs and the model double: one round trip per library, across the backends."""

from __future__ import annotations

import pytest
from langchain_anthropic import ChatAnthropic
from langchain_core.messages import HumanMessage
from langchain_openai import ChatOpenAI

from tests.support.model_double import assistant_texts, generation_requests, user_texts
from tests.support.node_sdks import vercel_ai

pytestmark = pytest.mark.real


def _last_generation(double) -> dict:
    calls = generation_requests(double.requests())
    assert calls, "the CLI never called the model double"
    return calls[-1]


def test_langchain_chat_completions_invoke(clinvk_server, model_double):
    """ChatOpenAI on chat completions gets codex's answer and the double's usage (a model
    name with "codex" in it makes ChatOpenAI pick the Responses API unless told not to)."""
    model_double.set(reply="alpha beta gamma", input_tokens=11)
    llm = ChatOpenAI(base_url=clinvk_server.url + "/openai/v1", api_key="not-needed",
                     model="codex", max_retries=0, timeout=120, use_responses_api=False)
    message = llm.invoke("Say hi")
    assert message.content == "alpha beta gamma"
    assert (message.usage_metadata["input_tokens"], message.usage_metadata["output_tokens"]) \
        == (11, 3)
    assert any("Say hi" in t for t in user_texts(_last_generation(model_double)))


def test_langchain_responses_previous_response_id_carries_history(clinvk_server, model_double):
    """ChatOpenAI on the Responses API with use_previous_response_id: the second turn
    resumes claude's session, so the model sees turn 1 and clinvk sent only the new turn."""
    llm = ChatOpenAI(base_url=clinvk_server.url + "/openai/v1", api_key="not-needed",
                     model="claude", max_retries=0, timeout=120, use_responses_api=True,
                     use_previous_response_id=True)
    model_double.set(reply="Hello Zed")
    first = llm.invoke([HumanMessage("My name is Zed. Remember it.")])
    assert first.text == "Hello Zed"
    model_double.set(reply="Your name is Zed")
    second = llm.invoke([HumanMessage("My name is Zed. Remember it."), first,
                         HumanMessage("What is my name?")])
    assert second.text == "Your name is Zed"
    request = _last_generation(model_double)
    users = user_texts(request)
    assert any("My name is Zed. Remember it." in t for t in users)
    assert any(t.rstrip("\n") == "What is my name?" for t in users)
    assert not any("The conversation so far" in t for t in users)
    assert any("Hello Zed" in t for t in assistant_texts(request))


def test_langchain_anthropic_stream(clinvk_server, model_double):
    """ChatAnthropic.stream() gets gemini's answer in several pieces."""
    model_double.set(words=5, delay_ms=100)
    llm = ChatAnthropic(base_url=clinvk_server.url + "/anthropic", api_key="not-needed",
                        model="gemini", max_retries=0, timeout=120)
    pieces = [c.text for c in llm.stream("Say hi") if c.text]
    assert "".join(pieces) == "w0 w1 w2 w3 w4" and len(pieces) >= 3


def test_vercel_openai_responses_multi_step(clinvk_server, model_double):
    """The AI SDK's default openai provider (Responses API): a multi-step conversation
    whose earlier answer goes back as an item_reference reaches claude's model whole."""
    model_double.set(reply="Hello Zed")
    out = vercel_ai(clinvk_server.url, provider="openai", model="claude",
                    prompt="My name is Zed.", followUp="What is my name?")
    assert "error" not in out and "error" not in out["followUp"], out
    assert out["text"] == out["followUp"]["text"] == "Hello Zed"
    assert out["usage"]["outputTokens"] == 2
    prompt = "\n".join(user_texts(_last_generation(model_double)))
    for text in ("My name is Zed.", "Hello Zed", "What is my name?"):
        assert text in prompt


def test_vercel_openai_chat_stream(clinvk_server, model_double):
    """openai.chat(model) with streamText gets codex's answer and finish reason."""
    model_double.set(words=5)
    out = vercel_ai(clinvk_server.url, provider="openai.chat", model="codex", prompt="Say hi",
                    mode="stream")
    assert "error" not in out, out
    assert out["text"] == "w0 w1 w2 w3 w4" and out["finishReason"] == "stop"


def test_vercel_anthropic_stream(clinvk_server, model_double):
    """@ai-sdk/anthropic's streamText gets gemini's answer in several pieces with usage."""
    model_double.set(words=5, delay_ms=100)
    out = vercel_ai(clinvk_server.url, provider="anthropic", model="gemini", prompt="Say hi",
                    mode="stream")
    assert "error" not in out, out
    assert out["text"] == "w0 w1 w2 w3 w4" and len(out["chunks"]) >= 3
    assert out["finishReason"] == "stop" and out["usage"]["outputTokens"] == 5
