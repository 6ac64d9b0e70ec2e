"""The whole request's deadline (write_timeout_secs, request_timeout_secs as a backstop)."""

from __future__ import annotations

import threading

import anyio
import msgspec
import pytest
from starlette.testclient import TestClient

from clinvk.adapters.http.app import create_app
from clinvk.adapters.http.middleware.timeouts import (
    BACKSTOP_GRACE_SECS,
    RequestTimeoutMiddleware,
)
from clinvk.entrypoints.bootstrap import bootstrap
from tests.fakes import FakeClock, FakeIds, FakeSessionStore


@pytest.fixture
def quick_app(config, runner):
    """The app with a 0.4 s write deadline, on a CLI that never answers."""
    runner.hang = True
    server = msgspec.structs.replace(config.server, write_timeout_secs=0.4, heartbeat_secs=0)
    services = bootstrap(msgspec.structs.replace(config, server=server), runner=runner,
                         store=FakeSessionStore(), clock=FakeClock(), ids=FakeIds())
    return create_app(services)


@pytest.mark.parametrize(("path", "body", "check"), [
    ("/api/v1/prompt", {"backend": "claude", "prompt": "hi"},
     lambda j: j["code"] == "timeout"),
    ("/openai/v1/chat/completions",
     {"model": "claude", "messages": [{"role": "user", "content": "hi"}]},
     lambda j: j["error"]["type"] == "server_error"),
    ("/anthropic/v1/messages",
     {"model": "claude", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]},
     lambda j: j["error"]["type"] == "timeout_error"),
])
def test_a_request_past_its_deadline_is_504_and_the_run_is_cancelled(
    quick_app, runner, path, body, check
):
    """A response not started by the deadline becomes a 504 in the dialect's envelope, and
    the CLI run is cancelled (its cleanup ends the process group)."""
    with TestClient(quick_app) as client:
        r = client.post(path, json=body)  # the CLI never answers: only the deadline ends this
    assert r.status_code == 504, r.text
    assert check(r.json())
    assert runner.live == 0 and len(runner.runs) == 1


@pytest.mark.anyio
async def test_a_stream_past_its_deadline_is_cut_and_its_run_cancelled(quick_app, runner):
    """A stream that has started is cut off at the deadline (no clean end) and its run ends."""
    runner.hang = False
    runner.reply = "one two three"
    runner.hold, runner.hold_at = threading.Event(), 2  # two words, then silence for good
    sent: list[dict] = []
    body = [b'{"backend": "claude", "prompt": "hi", "output_format": "stream-json"}']

    async def receive() -> dict:
        if body:
            return {"type": "http.request", "body": body.pop(), "more_body": False}
        await anyio.sleep_forever()
        raise AssertionError  # unreachable

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "POST", "scheme": "http", "path": "/api/v1/prompt",
             "raw_path": b"/api/v1/prompt", "root_path": "", "query_string": b"",
             "headers": [(b"content-type", b"application/json")],
             "client": ("127.0.0.1", 1), "server": ("testserver", 80)}
    with anyio.fail_after(30):  # a hang guard only: the deadline is 0.4 s
        await quick_app(scope, receive, send)
    assert sent[0]["type"] == "http.response.start" and sent[0]["status"] == 200
    body_sent = b"".join(m.get("body", b"") for m in sent[1:])
    assert b'"one"' in body_sent and b'" two"' in body_sent and b"three" not in body_sent
    assert sent[-1].get("more_body") is True  # cut, not ended as if complete
    assert runner.live == 0


@pytest.mark.anyio
async def test_a_client_that_stops_reading_does_not_hold_the_request():
    """When sending blocks (the client stopped reading) the deadline still ends the app."""
    finished = anyio.Event()

    async def app(scope, receive, send) -> None:
        try:
            await send({"type": "http.response.start", "status": 200, "headers": []})
            while True:
                await send({"type": "http.response.body", "body": b"x", "more_body": True})
        finally:
            finished.set()

    async def stuck_send(message: dict) -> None:
        if message["type"] == "http.response.body":
            await anyio.sleep_forever()

    async def receive() -> dict:
        await anyio.sleep_forever()
        raise AssertionError  # unreachable

    timed = RequestTimeoutMiddleware(app, request_timeout=0, write_timeout=0.2)
    with anyio.fail_after(30):  # a hang guard only: the deadline is 0.2 s
        await timed({"type": "http", "path": "/x"}, receive, stuck_send)
    assert finished.is_set()


def test_the_deadline_is_the_tighter_of_write_and_request_timeouts():
    """write_timeout_secs bounds the response; request_timeout_secs only as a late backstop."""
    def deadline(request: float, write: float) -> float:
        return RequestTimeoutMiddleware(None, request_timeout=request,  # type: ignore[arg-type]
                                        write_timeout=write).deadline

    assert deadline(300, 300) == 300
    assert deadline(60, 300) == 60 + BACKSTOP_GRACE_SECS
    assert deadline(0, 30) == 30
    assert deadline(0, 0) == float("inf")
