"""The Vercel AI SDK (node: `ai` with `@ai-sdk/openai` and `@ai-sdk/anthropic`) against a
real uvicorn server running the app on fakes; a recorder keeps what the SDK sent."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from clinvk.adapters.http.app import create_app
from tests.support.live import LiveServer
from tests.support.node_sdks import vercel_ai
from tests.support.recorder import RequestRecorder

PROVIDERS = {  # provider -> the path it posts to
    "openai": "/openai/v1/responses",
    "openai.chat": "/openai/v1/chat/completions",
    "anthropic": "/anthropic/v1/messages",
}
CONVERSATION = [
    {"role": "system", "content": "Answer tersely."},
    {"role": "user", "content": "My name is Zed."},
    {"role": "assistant", "content": "Hello Zed."},
    {"role": "user", "content": "What is my name?"},
]


@pytest.fixture
def recorder(services) -> RequestRecorder:
    return RequestRecorder(create_app(services))


@pytest.fixture
def live(recorder) -> Iterator[LiveServer]:
    with LiveServer(recorder) as server:
        yield server


@pytest.mark.parametrize("provider", PROVIDERS)
def test_generate_text_has_text_usage_and_finish_reason(live, recorder, runner, provider):
    """generateText returns the answer, finishReason 'stop' and the run's token counts."""
    out = vercel_ai(live.url, provider=provider, model="claude", prompt="hi")
    assert "error" not in out, out
    assert out["text"] == "hello from fake" and out["finishReason"] == "stop"
    assert (out["usage"]["inputTokens"], out["usage"]["outputTokens"]) == (3, 3)
    body = recorder.bodies(PROVIDERS[provider])[-1]
    assert body["model"] == "claude" and "stream" not in body
    assert runner.runs[-1].backend == "claude" and "hi" in runner.runs[-1].prompt


@pytest.mark.parametrize("provider", PROVIDERS)
def test_stream_text_arrives_in_pieces(live, recorder, runner, provider):
    """streamText yields the answer in several deltas, then finishReason and usage."""
    runner.reply = "one two three four"
    out = vercel_ai(live.url, provider=provider, model="claude", prompt="hi", mode="stream")
    assert "error" not in out, out
    assert len(out["chunks"]) > 1 and out["text"] == "one two three four"
    assert out["finishReason"] == "stop" and out["usage"]["totalTokens"] == 6
    assert recorder.bodies(PROVIDERS[provider])[-1]["stream"] is True


@pytest.mark.parametrize("provider", PROVIDERS)
def test_message_list_reaches_the_cli(live, recorder, runner, provider):
    """A system message and an earlier exchange reach the CLI with the new turn."""
    out = vercel_ai(live.url, provider=provider, model="claude", messages=CONVERSATION)
    assert "error" not in out, out
    run = runner.runs[-1]
    rendered = f"{run.system_prompt or ''}\n{run.prompt}"
    for message in CONVERSATION:
        assert message["content"] in rendered


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("mode", ["generate", "stream"])
def test_multi_step_with_response_messages(live, recorder, runner, provider, mode):
    """The documented multi-step pattern (the answer's response.messages appended, then the
    next user turn) works; the Responses provider refers to the stored answer by
    `item_reference`, which clinvk resolves to that answer's text."""
    runner.reply = "Hello Zed."
    out = vercel_ai(live.url, provider=provider, model="claude", mode=mode,
                    prompt="My name is Zed.", followUp="What is my name?")
    assert "error" not in out and "error" not in out["followUp"], out
    body = recorder.bodies(PROVIDERS[provider])[-1]
    if provider == "openai":
        assert body["input"][1] == {"type": "item_reference",
                                    "id": out["response"]["messages"][0]["content"][0][
                                        "providerOptions"]["openai"]["itemId"]}
    assert "My name is Zed." in runner.runs[-1].prompt
    assert "Hello Zed." in runner.runs[-1].prompt
    assert "What is my name?" in runner.runs[-1].prompt


def test_item_reference_to_an_unstored_answer_is_a_bad_request(live):
    """An item_reference to an answer created with store: false is an APICallError 400."""
    out = vercel_ai(live.url, provider="openai", model="claude", prompt="My name is Zed.",
                    followUp="What is my name?",
                    providerOptions={"openai": {"store": False}})
    # With store: false the SDK sends the answer itself, not a reference: no error.
    assert "error" not in out["followUp"], out
    out = vercel_ai(live.url, provider="openai", model="claude",
                    messages=[{"role": "user", "content": "hi"},
                              {"role": "assistant", "content": [{
                                  "type": "text", "text": "x",
                                  "providerOptions": {"openai": {"itemId": "msg_nope"}}}]},
                              {"role": "user", "content": "again"}])
    assert out["error"]["name"] == "AI_APICallError" and out["error"]["statusCode"] == 400
    assert "msg_nope" in out["error"]["message"]


def test_previous_response_id_resumes_the_cli_session(live, recorder, runner):
    """providerOptions.openai.previousResponseId sends only the new turn, and clinvk
    resumes the CLI session of that response."""
    first = vercel_ai(live.url, provider="openai", model="claude", prompt="My name is Zed.")
    response_id = first["providerMetadata"]["openai"]["responseId"]
    out = vercel_ai(live.url, provider="openai", model="claude", prompt="What is my name?",
                    providerOptions={"openai": {"previousResponseId": response_id}})
    assert "error" not in out, out
    assert recorder.bodies("/openai/v1/responses")[-1]["previous_response_id"] == response_id
    assert runner.runs[-1].resume_id and runner.runs[-1].prompt == "What is my name?"


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_refused_request_is_the_sdks_api_call_error(live, provider):
    """A request clinvk refuses (an unknown previous response, image bytes that are no
    image) is an APICallError with the status and the dialect's own error body."""
    options = {"openai": {"previousResponseId": "resp_nope"}} if provider == "openai" else None
    messages = [{"role": "user", "content": [
        {"type": "image", "image": "AA==", "mediaType": "image/png"}]}]
    out = vercel_ai(live.url, provider=provider, model="claude",
                    **({"prompt": "hi", "providerOptions": options} if options
                       else {"messages": messages}))
    assert out["error"]["name"] == "AI_APICallError" and out["error"]["statusCode"] == 400
    assert "invalid_request" in out["error"]["responseBody"]
