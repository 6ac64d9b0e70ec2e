"""The official `openai` SDK against a real uvicorn server running the app on fakes."""

from __future__ import annotations

import time

import anyio
import openai
import pytest
from openai import AsyncOpenAI, OpenAI

from clinvk.adapters.http.app import create_app
from clinvk.domain.errors import BackendTimeout, Overloaded
from tests.fakes import AppSpy
from tests.support.live import LiveServer


@pytest.fixture
def app(services) -> AppSpy:
    """The whole app, watched: requests started and finished, what its responses carried."""
    return AppSpy(create_app(services))


@pytest.fixture
def server_url(app):
    """Base URL of a uvicorn server running the whole app in a background thread."""
    with LiveServer(app) as server:
        yield server.url


@pytest.fixture
def client(server_url):
    with OpenAI(base_url=f"{server_url}/openai/v1", api_key="k", max_retries=0) as c:
        yield c


def wait_until(predicate, seconds: float = 30.0) -> bool:
    """Whether `predicate()` came true; the generous limit only guards against a hang."""
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_seed_example_runs_verbatim(server_url, capsys):
    """The seed's OpenAI SDK example (only the port changed) prints the answer."""
    port = server_url.rsplit(":", 1)[1]
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
    assert capsys.readouterr().out == "hello from fake\n"
    client.close()


def test_sync_completion_is_typed_with_usage(client, runner):
    """A sync completion parses into the SDK's ChatCompletion with the real counts."""
    completion = client.chat.completions.create(
        model="gpt-5", messages=[{"role": "user", "content": "hi"}], temperature=0.1
    )
    assert completion.object == "chat.completion" and completion.model == "gpt-5"
    assert completion.choices[0].message.content == "hello from fake"
    assert completion.choices[0].finish_reason == "stop"
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (3, 3)
    assert runner.runs[-1].backend == "codex"


def test_raw_response_exposes_the_session_header(client, runner):
    """with_raw_response shows X-Clinvk-Session-Id, and extra_body continues that session."""
    raw = client.chat.completions.with_raw_response.create(
        model="claude", messages=[{"role": "user", "content": "I am Zed."}]
    )
    sid = raw.headers["x-clinvk-session-id"]
    first = raw.parse()
    raw2 = client.chat.completions.with_raw_response.create(
        model="claude",
        messages=[
            {"role": "user", "content": "I am Zed."},
            {"role": "assistant", "content": first.choices[0].message.content},
            {"role": "user", "content": "Who am I?"},
        ],
        extra_body={"clinvk": {"session_id": sid}},
    )
    assert raw2.headers["x-clinvk-session-id"] == sid
    assert runner.runs[-1].prompt == "Who am I?" and runner.runs[-1].resume_id


def test_sync_stream_with_usage(client, runner):
    """stream=True yields typed chunks whose text is the answer, then a usage chunk."""
    runner.reply = "streamed reply text"
    stream = client.chat.completions.create(
        model="gemini", messages=[{"role": "user", "content": "hi"}], stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == runner.reply
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens == 6


@pytest.mark.anyio
async def test_async_client_completion_and_stream(server_url, runner):
    """AsyncOpenAI gets the same completion and the same streamed text."""
    async with AsyncOpenAI(base_url=f"{server_url}/openai/v1", api_key="k", max_retries=0) as c:
        completion = await c.chat.completions.create(
            model="claude", messages=[{"role": "user", "content": "hi"}]
        )
        stream = await c.chat.completions.create(
            model="claude", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        text = "".join([ch.choices[0].delta.content or "" async for ch in stream])
    assert completion.choices[0].message.content == text == "hello from fake"


def test_models_list_and_retrieve(client):
    """models.list and models.retrieve work; an unknown model raises NotFoundError."""
    assert [m.id for m in client.models.list()] == ["claude", "codex", "gemini"]
    assert client.models.retrieve("gemini").owned_by == "google"
    with pytest.raises(openai.NotFoundError) as err:
        client.models.retrieve("gpt-99")
    assert err.value.code == "model_not_found"


def test_bad_request_is_bad_request_error(client):
    """A remote image (server.fetch_remote_images off) raises BadRequestError whose param
    names the part's URL."""
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(
            model="claude",
            messages=[{"role": "user", "content": [
                {"type": "text", "text": "see"},
                {"type": "image_url", "image_url": {"url": "https://example.invalid/a.png"}},
            ]}],
        )
    assert err.value.param == "messages[0].content[1].image_url"
    assert err.value.type == "invalid_request_error"
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model="claude", messages=[], n=2)
    assert err.value.param == "messages"


def test_backend_errors_are_status_errors(client, runner, monkeypatch):
    """Backend failed / unavailable / timed out raise APIStatusError with 502 / 503 / 504."""
    messages = [{"role": "user", "content": "hi"}]
    runner.fail = "injected failure"
    with pytest.raises(openai.APIStatusError) as err:
        client.chat.completions.create(model="claude", messages=messages)
    assert err.value.status_code == 502 and err.value.code == "backend_failed"
    assert "injected failure" in err.value.message
    runner.fail = None
    runner.unavailable.add("codex")
    with pytest.raises(openai.APIStatusError) as err:
        client.chat.completions.create(model="codex", messages=messages)
    assert err.value.status_code == 503

    async def late(spec, on_event=None):
        raise BackendTimeout(spec.backend, 5)

    monkeypatch.setattr(runner, "run", late)
    with pytest.raises(openai.APIStatusError) as err:
        client.chat.completions.create(model="claude", messages=messages)
    assert err.value.status_code == 504 and err.value.code == "backend_timeout"


def test_sdk_does_not_retry_unavailable_or_timed_out_runs(server_url, services, monkeypatch):
    """With the SDK's default retries, a 503 or 504 is not retried (x-should-retry: false)."""
    calls = []

    async def late(request, on_event=None):
        calls.append(request)
        raise BackendTimeout(request.backend, 5)

    monkeypatch.setattr(services.prompt, "run", late)
    with OpenAI(base_url=f"{server_url}/openai/v1", api_key="k") as c:
        with pytest.raises(openai.InternalServerError):
            c.chat.completions.create(model="claude", messages=[{"role": "user", "content": "x"}])
    assert len(calls) == 1


def test_overload_is_rate_limit_error(client, services, monkeypatch):
    """A refused run raises RateLimitError carrying Retry-After."""

    async def refuse(request, on_event=None):
        raise Overloaded("busy", retry_after=3)

    monkeypatch.setattr(services.prompt, "run", refuse)
    with pytest.raises(openai.RateLimitError) as err:
        client.chat.completions.create(model="claude", messages=[{"role": "user", "content": "x"}])
    assert err.value.response.headers["retry-after"] == "3"


def test_mid_stream_failure_raises_api_error(client, runner):
    """A CLI failing mid-stream makes the SDK raise APIError after the text it got so far."""
    runner.fail = "model API went away"
    seen = []
    stream = client.chat.completions.create(
        model="claude", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    with pytest.raises(openai.APIError) as err:
        for chunk in stream:
            seen.append(chunk.choices[0].delta.content or "")
    assert not isinstance(err.value, openai.APIStatusError)
    assert err.value.message == "model API went away" and err.value.code == "backend_failed"
    assert "".join(seen) == "hello from fake"


def test_client_timeout_cancels_the_run(client, app, runner):
    """A client-side timeout on a non-streaming call ends the CLI run on the server."""
    runner.hang = True  # the run never ends by itself: only its cancellation ends the request
    with pytest.raises(openai.APITimeoutError):
        client.with_options(timeout=0.5).chat.completions.create(
            model="claude", messages=[{"role": "user", "content": "hi"}]
        )
    assert wait_until(lambda: app.finished == app.started == 1), "the run outlived its client"
    assert runner.live == 0 and len(runner.runs) <= 1


def test_closing_a_stream_cancels_the_run(client, runner):
    """Closing a stream mid-answer ends the CLI run on the server."""
    runner.hang = True
    stream = client.chat.completions.create(
        model="codex", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    first = next(iter(stream))
    assert first.choices[0].delta.role == "assistant"
    assert runner.live == 1
    stream.close()
    assert wait_until(lambda: runner.live == 0), "the run outlived its client"


def test_heartbeats_keep_a_slow_stream_alive(server_url, app, runner):
    """Heartbeat comments keep a stream alive past the client's read timeout."""
    runner.reply = "a b"
    # heartbeat_secs is 0.2 and a ping only goes out after 0.2 s without a write, so the CLI,
    # silent until 8 pings went out, is silent for at least 1.6 s: past the 1.5 s read
    # timeout, which the stream outlives only thanks to the pings.
    runner.hold = app.when_sent(b": ping", times=8)
    with OpenAI(base_url=f"{server_url}/openai/v1", api_key="k", max_retries=0, timeout=1.5) as c:
        stream = c.chat.completions.create(
            model="claude", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        assert "".join(ch.choices[0].delta.content or "" for ch in stream) == "a b"


@pytest.mark.anyio
async def test_async_timeout_cancels_the_run(server_url, app, runner):
    """An AsyncOpenAI timeout also ends the run on the server."""
    runner.hang = True  # the run never ends by itself: only its cancellation ends the request
    async with AsyncOpenAI(base_url=f"{server_url}/openai/v1", api_key="k", max_retries=0,
                           timeout=0.5) as c:
        with pytest.raises(openai.APITimeoutError):
            await c.chat.completions.create(
                model="gemini", messages=[{"role": "user", "content": "hi"}]
            )
    with anyio.fail_after(30):  # a hang guard only
        while not app.finished == app.started == 1:
            await anyio.sleep(0.02)
    assert runner.live == 0 and len(runner.runs) <= 1
