"""The official `anthropic` SDK against a real `clinvk serve`, the real CLIs and the model
double: all three backends, sync, async, raw streams, the stream helper and typed errors."""

from __future__ import annotations

import json

import anthropic
import pytest
from anthropic import Anthropic, AsyncAnthropic

from tests.support.model_double import assistant_texts, generation_requests, user_texts

pytestmark = pytest.mark.real

BACKENDS = ["claude", "codex", "gemini"]
HELLO = [{"role": "user", "content": "Say hi"}]


@pytest.fixture
def client(clinvk_server):
    with Anthropic(base_url=clinvk_server.url + "/anthropic/v1", api_key="not-needed",
                   max_retries=0, timeout=60) as c:
        yield c


def _last_generation(double) -> dict:
    calls = generation_requests(double.requests())
    assert calls, "the CLI never called the model double"
    return calls[-1]


def test_seed_example_runs_verbatim(clinvk_server, model_double, capsys):
    """The seed's (and README's) Anthropic SDK example, with the test server's port, prints
    the answer."""
    port = clinvk_server.url.rsplit(":", 1)[1]
    import anthropic

    client = anthropic.Client(
        base_url=f"http://localhost:{port}/anthropic/v1",
        api_key="not-needed"  # only required if API keys are enabled
    )
    message = client.messages.create(
        model="claude",
        max_tokens=1024,
        messages=[{"role": "user", "content": "Hello!"}]
    )
    print(message.content[0].text)
    assert capsys.readouterr().out == "w0 w1 w2 w3 w4\n"
    client.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_backend_answers_with_the_doubles_usage(client, model_double, backend):
    """Each backend answers through the SDK with the double's text and token counts."""
    model_double.set(reply="alpha beta gamma delta", input_tokens=11)
    raw = client.messages.with_raw_response.create(model=backend, max_tokens=1024, messages=HELLO)
    assert raw.headers["x-clinvk-session-id"]
    message = raw.parse()
    assert message.id.startswith("msg_") and message.role == "assistant"
    assert message.model == backend
    assert [b.type for b in message.content] == ["text"]
    assert message.content[0].text == "alpha beta gamma delta"
    assert message.stop_reason == "end_turn" and message.stop_sequence is None
    assert (message.usage.input_tokens, message.usage.output_tokens) == (11, 4)
    assert "Say hi" in user_texts(_last_generation(model_double))


@pytest.mark.parametrize("backend", BACKENDS)
def test_stream_helper_text_equals_non_streamed_text(client, model_double, backend):
    """messages.stream()'s text_stream and final message equal the non-streamed answer."""
    model_double.set(words=6)
    plain = client.messages.create(model=backend, max_tokens=1024, messages=HELLO)
    with client.messages.stream(model=backend, max_tokens=1024, messages=HELLO) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == final.content[0].text == plain.content[0].text == "w0 w1 w2 w3 w4 w5"
    assert final.stop_reason == plain.stop_reason == "end_turn"
    assert final.usage.output_tokens == plain.usage.output_tokens == 6
    assert final.usage.input_tokens == plain.usage.input_tokens == 7


def test_raw_stream_events_come_in_anthropics_order(client, model_double):
    """stream=True yields message_start, the text block's events, message_delta, message_stop."""
    model_double.set(words=3)
    with client.messages.create(model="claude", max_tokens=1024, messages=HELLO,
                                stream=True) as stream:
        events = list(stream)
    types = [e.type for e in events]
    assert types[:2] == ["message_start", "content_block_start"]
    assert types[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert set(types[2:-3]) == {"content_block_delta"}
    assert "".join(e.delta.text for e in events if e.type == "content_block_delta") == "w0 w1 w2"
    assert events[-2].usage.output_tokens == 3 and events[-2].usage.input_tokens == 7


@pytest.mark.anyio
@pytest.mark.parametrize("backend", ["claude", "gemini"])
async def test_async_stream_arrives_piece_by_piece(clinvk_server, model_double, backend):
    """AsyncAnthropic receives a token-streaming CLI's text in several deltas as it is produced."""
    model_double.set(words=5, delay_ms=100)
    async with AsyncAnthropic(base_url=clinvk_server.url + "/anthropic/v1", api_key="k",
                              max_retries=0, timeout=60) as c:
        async with c.messages.stream(model=backend, max_tokens=1024, messages=HELLO) as stream:
            pieces = [t async for t in stream.text_stream]
            final = await stream.get_final_message()
    assert "".join(pieces) == final.content[0].text == "w0 w1 w2 w3 w4"
    assert len(pieces) >= 3


@pytest.mark.anyio
async def test_async_create(clinvk_server, model_double):
    """AsyncAnthropic's messages.create gets the whole answer."""
    async with AsyncAnthropic(base_url=clinvk_server.url + "/anthropic/v1", api_key="k",
                              max_retries=0, timeout=60) as c:
        message = await c.messages.create(model="codex", max_tokens=1024, messages=HELLO)
    assert message.content[0].text == "w0 w1 w2 w3 w4"


@pytest.mark.parametrize("backend", BACKENDS)
def test_session_continues_through_extra_body(client, model_double, backend):
    """A second turn with extra_body clinvk.session_id resumes the CLI's session: the model
    sees the first turn, and clinvk sends only the new message."""
    model_double.set(reply="Hello Zed")
    first = [{"role": "user", "content": "My name is Zed. Remember it."}]
    raw = client.messages.with_raw_response.create(model=backend, max_tokens=1024, messages=first)
    sid = raw.headers["x-clinvk-session-id"]
    model_double.set(reply="Your name is Zed")
    raw2 = client.messages.with_raw_response.create(
        model=backend,
        max_tokens=1024,
        messages=[
            *first,
            {"role": "assistant", "content": raw.parse().content[0].text},
            {"role": "user", "content": "What is my name?"},
        ],
        extra_body={"clinvk": {"session_id": sid}},
    )
    assert raw2.headers["x-clinvk-session-id"] == sid
    assert raw2.parse().content[0].text == "Your name is Zed"
    request = _last_generation(model_double)
    users = user_texts(request)
    assert any("My name is Zed. Remember it." in t for t in users)
    assert any(t.rstrip("\n") == "What is my name?" for t in users)
    assert not any("The conversation so far" in t for t in users)
    assert any("Hello Zed" in t for t in assistant_texts(request))


@pytest.mark.parametrize("backend", BACKENDS)
def test_system_blocks_reach_the_model(client, model_double, backend):
    """`system` (here as text blocks) becomes the CLI's system prompt, which the model receives."""
    client.messages.create(
        model=backend, max_tokens=1024, messages=[{"role": "user", "content": "hi"}],
        system=[{"type": "text", "text": "Always answer like a pirate."},
                {"type": "text", "text": "MARKER-5519"}],
    )
    request = _last_generation(model_double)
    assert "MARKER-5519" in json.dumps(request["body"])
    assert not any("MARKER-5519" in t for t in user_texts(request))


def test_multi_turn_history_without_a_session_reaches_the_model(client, model_double):
    """Without a session the earlier turns travel in the prompt, thinking blocks dropped."""
    client.messages.create(model="claude", max_tokens=1024, messages=[
        {"role": "user", "content": "Pick a colour."},
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "teal is nice", "signature": "c2ln"},
            {"type": "text", "text": "Teal."},
        ]},
        {"role": "user", "content": [{"type": "text", "text": "Why that one?"}]},
    ])
    prompt = "\n".join(user_texts(_last_generation(model_double)))
    assert '[{"role":"user","content":"Pick a colour."},{"role":"assistant","content":"Teal."}]' in prompt
    assert "teal is nice" not in prompt
    assert prompt.rstrip().endswith("Why that one?")


@pytest.mark.parametrize("backend", BACKENDS)
def test_failing_model_api_is_a_502_api_error(client, model_double, clinvk_server, backend):
    """When the model API fails, the SDK raises a 502 api_error and no CLI is left."""
    model_double.set(fail_status=500)
    with pytest.raises(anthropic.InternalServerError) as err:
        client.messages.create(model=backend, max_tokens=1024, messages=HELLO)
    assert err.value.status_code == 502 and err.value.body["error"]["type"] == "api_error"
    assert clinvk_server.wait_no_cli() == []


def test_failing_model_api_mid_stream_raises_api_error(client, model_double):
    """A stream whose CLI fails makes the stream helper raise an APIError, never a clean stop."""
    model_double.set(fail_status=500)
    with pytest.raises(anthropic.APIError):
        with client.messages.stream(model="claude", max_tokens=1024, messages=HELLO) as stream:
            for _ in stream.text_stream:
                pass
            stream.get_final_message()


def test_image_block_that_is_no_image_is_a_bad_request_error(client, model_double):
    """An image block whose bytes are no image raises BadRequestError naming the block, and
    no CLI runs (real images reach the CLIs: test_images_real.py)."""
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}}
    with pytest.raises(anthropic.BadRequestError) as err:
        client.messages.create(model="claude", max_tokens=1024,
                               messages=[{"role": "user", "content": [image]}])
    message = err.value.body["error"]["message"]
    assert message.startswith("messages.0.content.0.source: the data is not a PNG")
    assert generation_requests(model_double.requests()) == []


def test_client_timeout_kills_the_cli(clinvk_server, model_double):
    """A client-side timeout leaves no CLI process behind on the server."""
    model_double.hold_after(1)  # the answer never ends by itself: the client's timeout fires
    with Anthropic(base_url=clinvk_server.url + "/anthropic/v1", api_key="k", max_retries=0,
                   timeout=3) as c:
        with pytest.raises(anthropic.APITimeoutError):
            c.messages.create(model="claude", max_tokens=1024, messages=HELLO)
    assert clinvk_server.wait_no_cli() == []


def test_closing_a_stream_kills_the_cli(client, clinvk_server, model_double):
    """Leaving a stream early leaves no CLI process behind on the server."""
    model_double.hold_after(1)  # the answer never ends by itself: only a kill ends the CLI
    with client.messages.stream(model="gemini", max_tokens=1024, messages=HELLO) as stream:
        next(iter(stream.text_stream))
    assert clinvk_server.wait_no_cli() == []


def test_models_list_the_backends(client):
    """models.list shows the three backends as Anthropic model objects."""
    models = list(client.models.list())
    assert [m.id for m in models] == BACKENDS
    assert all(m.type == "model" and m.display_name for m in models)
