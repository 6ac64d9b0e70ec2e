"""LangChain's ChatOpenAI (chat completions and the Responses API) and ChatAnthropic against
a real uvicorn server running the app on fakes; a recorder keeps what the library sent."""

from __future__ import annotations

from collections.abc import Iterator

import anthropic
import openai
import pytest
from langchain_anthropic import ChatAnthropic
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from langchain_openai import ChatOpenAI

from clinvk.adapters.http.app import create_app
from tests.support.live import LiveServer
from tests.support.recorder import RequestRecorder


@pytest.fixture
def recorder(services) -> RequestRecorder:
    return RequestRecorder(create_app(services))


@pytest.fixture
def live(recorder) -> Iterator[LiveServer]:
    with LiveServer(recorder) as server:
        yield server


def chat_openai(live, **kwargs) -> ChatOpenAI:
    return ChatOpenAI(base_url=f"{live.url}/openai/v1", api_key="not-needed", max_retries=0,
                      **{"model": "claude", **kwargs})


def chat_anthropic(live, **kwargs) -> ChatAnthropic:
    return ChatAnthropic(base_url=f"{live.url}/anthropic", api_key="not-needed", max_retries=0,
                         **{"model": "claude", **kwargs})


# -- ChatOpenAI, chat completions ----------------------------------------------------------


def test_chat_completions_invoke_has_text_usage_and_finish_reason(live, recorder, runner):
    """invoke() returns an AIMessage with the answer, usage and finish_reason 'stop'."""
    message = chat_openai(live).invoke("hi")
    assert isinstance(message, AIMessage) and message.content == "hello from fake"
    assert message.response_metadata["finish_reason"] == "stop"
    assert message.usage_metadata["input_tokens"] == 3
    assert message.usage_metadata["output_tokens"] == 3
    body = recorder.bodies("/openai/v1/chat/completions")[-1]
    assert body["model"] == "claude" and body["messages"] == [{"role": "user", "content": "hi"}]
    assert runner.runs[-1].backend == "claude" and "hi" in runner.runs[-1].prompt


def test_chat_completions_stream_arrives_in_pieces_with_usage(live, recorder, runner):
    """stream() yields several chunks whose text is the answer, the last one carrying usage."""
    runner.reply = "one two three four"
    chunks = list(chat_openai(live, stream_usage=True).stream("hi"))
    assert len([c for c in chunks if c.content]) > 1
    total = chunks[0]
    for chunk in chunks[1:]:
        total += chunk
    assert total.content == "one two three four"
    assert total.usage_metadata["total_tokens"] == 6
    assert total.response_metadata["finish_reason"] == "stop"
    body = recorder.bodies("/openai/v1/chat/completions")[-1]
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}


def test_chat_completions_multi_turn_message_list_reaches_the_cli(live, recorder, runner):
    """A system message and an earlier exchange reach the CLI's prompt with the new turn."""
    chat_openai(live).invoke([
        SystemMessage("Answer tersely."),
        HumanMessage("My name is Zed."),
        AIMessage("Hello Zed."),
        HumanMessage("What is my name?"),
    ])
    body = recorder.bodies("/openai/v1/chat/completions")[-1]
    assert [m["role"] for m in body["messages"]] == ["system", "user", "assistant", "user"]
    run = runner.runs[-1]
    rendered = f"{run.system_prompt or ''}\n{run.prompt}"
    for text in ("Answer tersely.", "My name is Zed.", "Hello Zed.", "What is my name?"):
        assert text in rendered


REMOTE_IMAGE = HumanMessage(content=[
    {"type": "text", "text": "see"},
    {"type": "image_url", "image_url": {"url": "https://example.invalid/a.png"}},
])


def test_chat_completions_error_is_the_sdks_bad_request(live):
    """A refused request (a remote image, fetching off) raises openai.BadRequestError."""
    with pytest.raises(openai.BadRequestError) as err:
        chat_openai(live).invoke([REMOTE_IMAGE])
    assert err.value.type == "invalid_request_error"


# -- ChatOpenAI, Responses API -------------------------------------------------------------


def test_responses_invoke_has_text_and_usage(live, recorder, runner):
    """use_responses_api=True posts to /responses and returns the answer with its usage."""
    message = chat_openai(live, use_responses_api=True).invoke("hi")
    assert message.text == "hello from fake"
    assert message.usage_metadata["input_tokens"] == 3
    assert message.usage_metadata["output_tokens"] == 3
    assert message.response_metadata["status"] == "completed"
    assert message.response_metadata["id"].startswith("resp_")
    body = recorder.bodies("/openai/v1/responses")[-1]
    assert body["model"] == "claude"
    assert body["input"] == [{"content": "hi", "role": "user", "type": "message"}]
    assert "hi" in runner.runs[-1].prompt


def test_responses_stream_arrives_in_pieces(live, recorder, runner):
    """stream() over the Responses events yields the answer in several pieces, then usage."""
    runner.reply = "one two three four"
    chunks = list(chat_openai(live, use_responses_api=True).stream("hi"))
    assert len([c for c in chunks if c.text]) > 1
    total = chunks[0]
    for chunk in chunks[1:]:
        total += chunk
    assert total.text == "one two three four"
    assert total.usage_metadata["total_tokens"] == 6
    assert recorder.bodies("/openai/v1/responses")[-1]["stream"] is True


def test_responses_multi_turn_message_list_reaches_the_cli(live, recorder, runner):
    """A message list with instructions and an earlier exchange reaches the CLI whole."""
    chat_openai(live, use_responses_api=True).invoke([
        SystemMessage("Answer tersely."),
        HumanMessage("My name is Zed."),
        AIMessage("Hello Zed."),
        HumanMessage("What is my name?"),
    ])
    body = recorder.bodies("/openai/v1/responses")[-1]
    assert [i.get("role") for i in body["input"]] == ["system", "user", "assistant", "user"]
    run = runner.runs[-1]
    rendered = f"{run.system_prompt or ''}\n{run.prompt}"
    for text in ("Answer tersely.", "My name is Zed.", "Hello Zed.", "What is my name?"):
        assert text in rendered


@pytest.mark.parametrize("stream", [False, True])
def test_responses_answer_sent_back_in_a_message_list(live, recorder, runner, stream):
    """The AIMessage an earlier (plain or streamed) call returned goes back as an output
    message carrying its id, and reaches the CLI's prompt as the assistant's turn."""
    runner.reply = "Hello Zed."
    llm = chat_openai(live, use_responses_api=True)
    turn = [HumanMessage("My name is Zed.")]
    if stream:
        chunks = list(llm.stream(turn))
        first = chunks[0]
        for chunk in chunks[1:]:
            first += chunk
    else:
        first = llm.invoke(turn)
    llm.invoke([*turn, first, HumanMessage("What is my name?")])
    sent = recorder.bodies("/openai/v1/responses")[-1]["input"][1]
    assert sent["role"] == "assistant" and sent["id"].startswith("msg_")
    assert sent["content"][0] == {"type": "output_text", "text": "Hello Zed.", "annotations": []}
    assert "Hello Zed." in runner.runs[-1].prompt
    assert "What is my name?" in runner.runs[-1].prompt


def test_responses_previous_response_id_resumes_the_cli_session(live, recorder, runner):
    """use_previous_response_id=True sends only the new turn with the last response's id,
    and clinvk resumes the CLI session of that response."""
    llm = chat_openai(live, use_responses_api=True, use_previous_response_id=True)
    first = llm.invoke([HumanMessage("My name is Zed.")])
    llm.invoke([HumanMessage("My name is Zed."), first, HumanMessage("What is my name?")])
    body = recorder.bodies("/openai/v1/responses")[-1]
    assert body["previous_response_id"] == first.response_metadata["id"]
    assert body["input"] == [{"content": "What is my name?", "role": "user", "type": "message"}]
    assert runner.runs[-1].resume_id and runner.runs[-1].prompt == "What is my name?"


def test_responses_error_is_the_sdks_bad_request(live):
    """A refused request on the Responses API raises openai.BadRequestError."""
    with pytest.raises(openai.BadRequestError) as err:
        chat_openai(live, use_responses_api=True).invoke([REMOTE_IMAGE])
    assert err.value.type == "invalid_request_error"


def test_a_codex_model_name_picks_the_responses_api_and_works(live, recorder, runner):
    """ChatOpenAI(model="codex") posts to /responses by itself (LangChain sends model names
    with "codex" there), and gets the answer as text content blocks."""
    message = chat_openai(live, model="codex").invoke("hi")
    assert recorder.requests[-1]["path"] == "/openai/v1/responses"
    assert message.text == "hello from fake" and runner.runs[-1].backend == "codex"


# -- ChatAnthropic -------------------------------------------------------------------------


def test_anthropic_invoke_has_text_usage_and_stop_reason(live, recorder, runner):
    """invoke() returns the answer, usage and stop_reason 'end_turn'."""
    message = chat_anthropic(live).invoke([SystemMessage("Be brief."), HumanMessage("hi")])
    assert message.content == "hello from fake"
    assert message.response_metadata["stop_reason"] == "end_turn"
    assert message.usage_metadata["input_tokens"] == 3
    assert message.usage_metadata["output_tokens"] == 3
    request = [r for r in recorder.requests if r["path"] == "/anthropic/v1/messages"][-1]
    assert request["body"]["system"] == "Be brief." and request["body"]["max_tokens"] > 0
    assert request["body"]["messages"] == [{"role": "user", "content": "hi"}]
    assert runner.runs[-1].backend == "claude"


def test_anthropic_stream_arrives_in_pieces_with_usage(live, runner):
    """stream() yields the answer in several pieces and, summed, the usage and stop reason."""
    runner.reply = "one two three four"
    chunks = list(chat_anthropic(live).stream("hi"))
    assert len([c for c in chunks if c.text]) > 1
    total = chunks[0]
    for chunk in chunks[1:]:
        total += chunk
    assert total.text == "one two three four"
    assert total.usage_metadata["output_tokens"] == 3
    assert total.response_metadata["stop_reason"] == "end_turn"


def test_anthropic_multi_turn_message_list_reaches_the_cli(live, runner):
    """An earlier exchange and the new turn reach the CLI's prompt."""
    chat_anthropic(live).invoke([
        HumanMessage("My name is Zed."), AIMessage("Hello Zed."), HumanMessage("What is my name?"),
    ])
    for text in ("My name is Zed.", "Hello Zed.", "What is my name?"):
        assert text in runner.runs[-1].prompt


def test_anthropic_error_is_the_sdks_bad_request(live):
    """A refused request (image bytes that are no image) raises anthropic.BadRequestError."""
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                         "data": "AA=="}}
    with pytest.raises(anthropic.BadRequestError) as err:
        chat_anthropic(live).invoke([HumanMessage(content=[image])])
    assert err.value.body["error"]["type"] == "invalid_request_error"
