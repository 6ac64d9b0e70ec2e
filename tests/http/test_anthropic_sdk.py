"""The official `anthropic` SDK, unchanged, against a real uvicorn server running the app
in-process on fakes: sync, async, raw streams, the stream helper and typed errors."""

from __future__ import annotations

import time
from collections.abc import Iterator

import anthropic
import pytest

from clinvk.adapters.http.app import create_app
from clinvk.domain.errors import BackendTimeout, Overloaded
from tests.fakes import AppSpy
from tests.support.live import LiveServer

HELLO = [{"role": "user", "content": "Hello!"}]


@pytest.fixture
def app(services) -> AppSpy:
    """The whole app, watched: requests started and finished, what its responses carried."""
    return AppSpy(create_app(services))


@pytest.fixture
def live(app) -> Iterator[LiveServer]:
    with LiveServer(app) as server:
        yield server


@pytest.fixture
def sdk(live) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=f"{live.url}/anthropic/v1", api_key="not-needed",
                             max_retries=0) as client:
        yield client


def wait_until(condition, timeout: float = 30.0) -> None:
    """Wait for `condition()`; the generous limit only guards against a hang."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


# -- the documented example --------------------------------------------------------------


def test_seed_example_runs_verbatim(live):
    """The seed's Anthropic example works as written (only the port differs)."""
    client = anthropic.Client(
        base_url=f"{live.url}/anthropic/v1",
        api_key="not-needed",  # only required if API keys are enabled
    )
    message = client.messages.create(
        model="claude",
        max_tokens=1024,
        messages=[{"role": "user", "content": "Hello!"}],
    )
    print(message.content[0].text)
    assert message.content[0].text == "hello from fake"
    client.close()


def test_base_url_without_the_second_v1_works_too(live):
    """base_url ".../anthropic" (the SDK then calls /anthropic/v1/messages) works as well."""
    with anthropic.Anthropic(base_url=f"{live.url}/anthropic", api_key="k") as client:
        message = client.messages.create(model="gemini", max_tokens=10, messages=HELLO)
    assert message.content[0].text == "hello from fake"


# -- answers -----------------------------------------------------------------------------


def test_sync_create_returns_a_typed_message(sdk, runner):
    """messages.create returns a typed Message with real usage and the requested model."""
    message = sdk.messages.create(model="gpt-5", max_tokens=64, messages=HELLO,
                                  system="Be terse.", stop_sequences=["END"],
                                  metadata={"user_id": "u1"})
    assert isinstance(message, anthropic.types.Message)
    assert message.id.startswith("msg_") and message.role == "assistant"
    assert message.model == "gpt-5" and message.stop_reason == "end_turn"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (3, 3)
    assert (runner.runs[-1].backend, runner.runs[-1].system_prompt) == ("codex", "Be terse.")


@pytest.mark.anyio
async def test_async_create(live):
    """AsyncAnthropic gets the same answer."""
    async with anthropic.AsyncAnthropic(base_url=f"{live.url}/anthropic/v1",
                                        api_key="k", max_retries=0) as client:
        message = await client.messages.create(model="codex", max_tokens=10, messages=HELLO)
    assert message.content[0].text == "hello from fake"


def test_raw_stream_yields_anthropics_events(sdk, app, runner):
    """stream=True yields the typed events in Anthropic's order, pings skipped by the SDK."""
    pinged = app.when_sent(b"event: ping")
    runner.hold = pinged  # the CLI says nothing until a ping went out, so one is interleaved
    with sdk.messages.create(model="claude", max_tokens=10, messages=HELLO, stream=True) as s:
        events = list(s)
    types = [e.type for e in events]
    assert types[:2] == ["message_start", "content_block_start"]
    assert types[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert "".join(e.delta.text for e in events if e.type == "content_block_delta") == (
        "hello from fake")
    assert events[-2].delta.stop_reason == "end_turn" and events[-2].usage.output_tokens == 3
    assert pinged.is_set() and "ping" not in types


def test_stream_helper_text_equals_the_non_streamed_answer(sdk):
    """messages.stream() text_stream and get_final_message() agree with messages.create."""
    with sdk.messages.stream(model="claude", max_tokens=10, messages=HELLO) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    plain = sdk.messages.create(model="claude", max_tokens=10, messages=HELLO)
    assert pieces == ["hello", " from", " fake"]
    assert "".join(pieces) == final.content[0].text == plain.content[0].text
    assert final.usage.input_tokens == plain.usage.input_tokens == 3
    assert final.usage.output_tokens == plain.usage.output_tokens == 3
    assert final.stop_reason == plain.stop_reason == "end_turn"


@pytest.mark.anyio
async def test_async_stream_helper(live):
    """The async stream helper yields the text and the final message."""
    async with anthropic.AsyncAnthropic(base_url=f"{live.url}/anthropic/v1", api_key="k") as client:
        async with client.messages.stream(model="gemini", max_tokens=10, messages=HELLO) as stream:
            text = "".join([t async for t in stream.text_stream])
            final = await stream.get_final_message()
    assert text == final.content[0].text == "hello from fake"


def test_session_continues_through_extra_body(sdk, runner):
    """The session header is readable through the SDK, and extra_body continues the session."""
    raw = sdk.messages.with_raw_response.create(model="claude", max_tokens=10, messages=HELLO)
    session_id = raw.headers["x-clinvk-session-id"]
    assert raw.parse().content[0].text == "hello from fake"
    history = [*HELLO, {"role": "assistant", "content": "hello from fake"},
               {"role": "user", "content": "Again?"}]
    sdk.messages.create(model="claude", max_tokens=10, messages=history,
                        extra_body={"clinvk": {"session_id": session_id}})
    assert runner.runs[-1].prompt == "Again?" and runner.runs[-1].resume_id


def test_models_list_and_retrieve(sdk):
    """models.list() pages Anthropic model objects; models.retrieve() finds a backend."""
    assert [m.id for m in sdk.models.list()] == ["claude", "codex", "gemini"]
    assert sdk.models.retrieve("codex").type == "model"


# -- typed errors ------------------------------------------------------------------------


def test_uncarried_block_is_bad_request(sdk):
    """An image block whose bytes are no image raises BadRequestError naming the block."""
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AA=="}}
    with pytest.raises(anthropic.BadRequestError) as err:
        sdk.messages.create(model="claude", max_tokens=10,
                            messages=[{"role": "user", "content": [image]}])
    assert err.value.body["error"]["type"] == "invalid_request_error"
    assert "messages.0.content.0" in err.value.message


def test_unknown_session_is_not_found(sdk):
    """An unknown session raises NotFoundError."""
    with pytest.raises(anthropic.NotFoundError):
        sdk.messages.create(model="claude", max_tokens=10, messages=HELLO,
                            extra_body={"clinvk": {"session_id": "missing"}})


def test_blocked_workdir_is_permission_denied(sdk):
    """A blocked workdir raises PermissionDeniedError."""
    with pytest.raises(anthropic.PermissionDeniedError):
        sdk.messages.create(model="claude", max_tokens=10, messages=HELLO,
                            extra_body={"clinvk": {"workdir": "/etc"}})


def test_backend_failure_is_a_502_api_error(sdk, runner):
    """A failing CLI raises APIStatusError 502 with the CLI's words."""
    runner.fail = "API Error: 500 injected 500"
    with pytest.raises(anthropic.InternalServerError) as err:
        sdk.messages.create(model="claude", max_tokens=10, messages=HELLO)
    assert err.value.status_code == 502 and "injected 500" in err.value.message


def test_missing_cli_is_503_and_not_retried(live, app, runner):
    """A CLI that is not installed raises ServiceUnavailableError at once, without retries."""
    runner.unavailable.add("claude")
    with anthropic.Anthropic(base_url=f"{live.url}/anthropic/v1", api_key="k") as client:
        with pytest.raises(anthropic.ServiceUnavailableError) as err:
            client.messages.create(model="claude", max_tokens=10, messages=HELLO)
    assert err.value.status_code == 503 and err.value.body["error"]["type"] == "overloaded_error"
    assert app.started == 1  # one request: default max_retries=2 would have asked again


def test_timeout_is_504_and_not_retried(live, runner):
    """A run that hit its deadline raises GatewayTimeoutError 504, and the SDK does not rerun it."""
    calls = []

    async def timed_out(spec, on_event=None):
        calls.append(spec)
        raise BackendTimeout("claude", 1)

    runner.run = timed_out
    with anthropic.Anthropic(base_url=f"{live.url}/anthropic/v1", api_key="k") as client:
        with pytest.raises(anthropic.GatewayTimeoutError) as err:
            client.messages.create(model="claude", max_tokens=10, messages=HELLO)
    assert err.value.status_code == 504 and err.value.body["error"]["type"] == "timeout_error"
    assert len(calls) == 1


def test_admission_refusal_is_a_rate_limit_error(sdk, runner):
    """Admission control's refusal raises RateLimitError with Retry-After."""
    async def refused(spec, on_event=None):
        raise Overloaded("too many CLI runs", retry_after=1)

    runner.run = refused
    with pytest.raises(anthropic.RateLimitError) as err:
        sdk.messages.create(model="claude", max_tokens=10, messages=HELLO)
    assert err.value.response.headers["retry-after"] == "1"


def test_failure_mid_stream_raises_api_error(sdk, runner):
    """A CLI failure after the stream started raises APIError from the stream helper,
    after the text that did arrive."""
    runner.fail = "API Error: 500 injected 500"
    received = []
    with pytest.raises(anthropic.APIError) as err:
        with sdk.messages.stream(model="claude", max_tokens=10, messages=HELLO) as stream:
            for text in stream.text_stream:
                received.append(text)
    assert "".join(received) == "hello from fake"
    assert err.value.body["error"]["type"] == "api_error"
    assert "injected 500" in err.value.body["error"]["message"]


# -- disconnects -------------------------------------------------------------------------


def test_closing_a_stream_terminates_the_cli(sdk, runner):
    """A client that leaves mid-stream cancels the CLI run."""
    runner.hang = True
    with sdk.messages.stream(model="claude", max_tokens=10, messages=HELLO) as stream:
        first = next(iter(stream))
        assert first.type == "message_start"
        assert runner.live == 1
    wait_until(lambda: runner.live == 0)


def test_client_timeout_terminates_a_non_streamed_run(live, app, runner):
    """A client that gives up on a non-streamed answer cancels the CLI run too."""
    runner.hang = True  # the run never ends by itself: only its cancellation ends the request
    with anthropic.Anthropic(base_url=f"{live.url}/anthropic/v1", api_key="k",
                             max_retries=0, timeout=0.5) as client:
        with pytest.raises(anthropic.APITimeoutError):
            client.messages.create(model="claude", max_tokens=10, messages=HELLO)
    wait_until(lambda: app.finished == app.started == 1)
    assert runner.live == 0 and len(runner.runs) <= 1
