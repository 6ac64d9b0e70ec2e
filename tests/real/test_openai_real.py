"""The official `openai` SDK against a real `clinvk serve`, the real CLIs and the model double."""

from __future__ import annotations

import json

import httpx
import openai
import pytest
from openai import AsyncOpenAI, OpenAI

from tests.support.model_double import assistant_texts, generation_requests, user_texts

pytestmark = pytest.mark.real

BACKENDS = ["claude", "codex", "gemini"]
HELLO = [{"role": "user", "content": "Say hi"}]


@pytest.fixture
def client(clinvk_server):
    with OpenAI(base_url=clinvk_server.url + "/openai/v1", api_key="not-needed",
                max_retries=0, timeout=60) as c:
        yield c


def _last_generation(double) -> dict:
    calls = generation_requests(double.requests())
    assert calls, "the CLI never called the model double"
    return calls[-1]


def test_seed_example_runs_verbatim(clinvk_server, model_double, capsys):
    """The seed's (and README's) OpenAI SDK example, with the test server's port, prints the
    answer."""
    port = clinvk_server.url.rsplit(":", 1)[1]
    from openai import OpenAI

    client = OpenAI(
        base_url=f"http://localhost:{port}/openai/v1",
        api_key="not-needed"  # only required if API keys are enabled
    )
    response = client.chat.completions.create(
        model="claude",
        messages=[{"role": "user", "content": "Hello!"}]
    )
    print(response.choices[0].message.content)
    assert capsys.readouterr().out == "w0 w1 w2 w3 w4\n"
    client.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_backend_answers_with_the_doubles_usage(client, model_double, backend):
    """Each backend answers through the SDK with the double's text and token counts."""
    model_double.set(reply="alpha beta gamma delta", input_tokens=11)
    raw = client.chat.completions.with_raw_response.create(model=backend, messages=HELLO)
    assert raw.headers["x-clinvk-session-id"]
    completion = raw.parse()
    assert completion.model == backend
    assert completion.choices[0].message.content == "alpha beta gamma delta"
    assert completion.choices[0].finish_reason == "stop"
    usage = completion.usage
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (11, 4, 15)
    assert "Say hi" in user_texts(_last_generation(model_double))


@pytest.mark.parametrize("backend", BACKENDS)
def test_streamed_text_equals_non_streamed_text(client, model_double, backend):
    """A streamed answer's text and usage equal the non-streamed answer's."""
    model_double.set(words=6)
    plain = client.chat.completions.create(model=backend, messages=HELLO)
    chunks = list(client.chat.completions.create(
        model=backend, messages=HELLO, stream=True, stream_options={"include_usage": True}
    ))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == plain.choices[0].message.content == "w0 w1 w2 w3 w4 w5"
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage.completion_tokens == plain.usage.completion_tokens == 6
    assert chunks[-1].usage.prompt_tokens == plain.usage.prompt_tokens == 7


@pytest.mark.anyio
@pytest.mark.parametrize("backend", ["claude", "gemini"])
async def test_async_stream_arrives_piece_by_piece(clinvk_server, model_double, backend):
    """AsyncOpenAI receives a token-streaming CLI's text in several chunks as it is produced."""
    model_double.set(words=5, delay_ms=100)
    async with AsyncOpenAI(base_url=clinvk_server.url + "/openai/v1", api_key="k",
                           max_retries=0, timeout=60) as c:
        stream = await c.chat.completions.create(model=backend, messages=HELLO, stream=True)
        pieces = [ch.choices[0].delta.content async for ch in stream
                  if ch.choices and ch.choices[0].delta.content]
    assert "".join(pieces) == "w0 w1 w2 w3 w4"
    assert len(pieces) >= 3


@pytest.mark.parametrize("backend", BACKENDS)
def test_session_continues_through_extra_body(client, model_double, backend):
    """A second turn with extra_body clinvk.session_id resumes the CLI's session: the model
    sees the first turn, and clinvk sends only the new message."""
    model_double.set(reply="Hello Zed")
    raw = client.chat.completions.with_raw_response.create(
        model=backend, messages=[{"role": "user", "content": "My name is Zed. Remember it."}]
    )
    sid = raw.headers["x-clinvk-session-id"]
    model_double.set(reply="Your name is Zed")
    raw2 = client.chat.completions.with_raw_response.create(
        model=backend,
        messages=[
            {"role": "user", "content": "My name is Zed. Remember it."},
            {"role": "assistant", "content": raw.parse().choices[0].message.content},
            {"role": "user", "content": "What is my name?"},
        ],
        extra_body={"clinvk": {"session_id": sid}},
    )
    assert raw2.headers["x-clinvk-session-id"] == sid
    assert raw2.parse().choices[0].message.content == "Your name is Zed"
    request = _last_generation(model_double)
    users = user_texts(request)
    assert any("My name is Zed. Remember it." in t for t in users)
    assert any(t.rstrip("\n") == "What is my name?" for t in users)
    assert not any("The conversation so far" in t for t in users)
    assert any("Hello Zed" in t for t in assistant_texts(request))


@pytest.mark.parametrize("backend", BACKENDS)
def test_system_message_reaches_the_model(client, model_double, backend):
    """A system message becomes the CLI's system prompt, which the model receives."""
    client.chat.completions.create(model=backend, messages=[
        {"role": "system", "content": "Always answer like a pirate. MARKER-7731"},
        {"role": "user", "content": "hi"},
    ])
    request = _last_generation(model_double)
    assert "MARKER-7731" in json.dumps(request["body"])
    assert not any("MARKER-7731" in t for t in user_texts(request))


def test_multi_turn_history_without_a_session_reaches_the_model(client, model_double):
    """Without a session the earlier turns travel in the prompt, in the documented layout."""
    client.chat.completions.create(model="claude", messages=[
        {"role": "user", "content": "Pick a colour."},
        {"role": "assistant", "content": "Teal."},
        {"role": "user", "content": "Why that one?"},
    ])
    prompt = "\n".join(user_texts(_last_generation(model_double)))
    history = '[{"role":"user","content":"Pick a colour."},{"role":"assistant","content":"Teal."}]'
    assert history in prompt
    assert prompt.rstrip().endswith("Why that one?")


@pytest.mark.parametrize("backend", BACKENDS)
def test_failing_model_api_is_a_502_status_error(client, model_double, clinvk_server, backend):
    """When the model API fails, the SDK raises APIStatusError 502 and no CLI is left."""
    model_double.set(fail_status=500)
    with pytest.raises(openai.APIStatusError) as err:
        client.chat.completions.create(model=backend, messages=HELLO)
    assert err.value.status_code == 502 and err.value.code == "backend_failed"
    assert clinvk_server.wait_no_cli() == []


def test_failing_model_api_mid_stream_raises_api_error(client, model_double):
    """A stream whose CLI fails makes the SDK raise an APIError, never a clean stop."""
    model_double.set(fail_status=500)
    finishes = []
    with pytest.raises(openai.APIError):
        for chunk in client.chat.completions.create(model="claude", messages=HELLO, stream=True):
            finishes += [c.finish_reason for c in chunk.choices]
    assert "stop" not in finishes


def test_image_part_that_is_no_image_is_a_bad_request_error(client, model_double):
    """An image part whose bytes are no image raises BadRequestError naming the part, and
    no CLI runs (real images reach the CLIs: test_images_real.py)."""
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model="claude", messages=[{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
        ]}])
    assert err.value.param == "messages[0].content[0].image_url"
    assert generation_requests(model_double.requests()) == []


def test_client_timeout_kills_the_cli(clinvk_server, model_double):
    """A client-side timeout leaves no CLI process behind on the server."""
    model_double.hold_after(1)  # the answer never ends by itself: the client's timeout fires
    with OpenAI(base_url=clinvk_server.url + "/openai/v1", api_key="k", max_retries=0,
                timeout=3) as c:
        with pytest.raises(openai.APITimeoutError):
            c.chat.completions.create(model="claude", messages=HELLO)
    assert clinvk_server.wait_no_cli() == []


def test_models_lists_the_backends(client):
    """models.list shows the three backends with their makers."""
    owners = {m.id: m.owned_by for m in client.models.list()}
    assert owners == {"claude": "anthropic", "codex": "openai", "gemini": "google"}


def test_workdir_option_runs_the_cli_there(client, clinvk_server, model_double):
    """extra_body clinvk.workdir runs the CLI in that directory (kept on the session)."""
    work = clinvk_server.workdir / "openai-project"
    work.mkdir(exist_ok=True)
    raw = client.chat.completions.with_raw_response.create(
        model="gemini", messages=HELLO, extra_body={"clinvk": {"workdir": str(work)}}
    )
    sid = raw.headers["x-clinvk-session-id"]
    session = httpx.get(f"{clinvk_server.url}/api/v1/sessions/{sid}").json()
    assert session["working_dir"] == str(work.resolve())
