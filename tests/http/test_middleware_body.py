"""Request bodies: size limit enforced on the bytes that arrive, and a read deadline."""

from __future__ import annotations

import json

import anyio
import msgspec
import pytest
from starlette.testclient import TestClient

from clinvk.adapters.http.app import create_app
from clinvk.entrypoints.bootstrap import bootstrap
from tests.fakes import FakeClock, FakeIds, FakeSessionStore

LIMIT = 1000


def _app(config, runner, read_timeout_secs: float):
    server = msgspec.structs.replace(
        config.server, max_request_body_bytes=LIMIT, read_timeout_secs=read_timeout_secs
    )
    services = bootstrap(msgspec.structs.replace(config, server=server), runner=runner,
                         store=FakeSessionStore(), clock=FakeClock(), ids=FakeIds())
    return create_app(services)


@pytest.fixture
def small_app(config, runner):
    """The app with a 1000-byte body limit (and a read deadline no body here comes near)."""
    return _app(config, runner, read_timeout_secs=30)


@pytest.fixture
def impatient_app(config, runner):
    """The app with a 1000-byte body limit and a 0.3 s read deadline."""
    return _app(config, runner, read_timeout_secs=0.3)


async def call(app, path: str, chunks: list[bytes], headers: dict[str, str],
               stall: bool = False) -> tuple[int, dict[str, str], bytes]:
    """Send one request straight to the ASGI app, body in `chunks` (then hang if `stall`)."""
    pending = list(chunks)
    sent: list[dict] = []

    async def receive() -> dict:
        if pending:
            chunk = pending.pop(0)
            return {"type": "http.request", "body": chunk, "more_body": bool(pending) or stall}
        await anyio.sleep_forever()  # the client neither sends more nor leaves
        raise AssertionError  # unreachable

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": path, "raw_path": path.encode(), "root_path": "",
        "query_string": b"", "client": ("127.0.0.1", 5000), "server": ("testserver", 80),
        "headers": [(b"host", b"testserver"), (b"content-type", b"application/json")]
        + [(k.lower().encode(), v.encode()) for k, v in headers.items()],
    }
    with anyio.fail_after(60):  # a hang guard only
        await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], {k.decode(): v.decode() for k, v in start["headers"]}, body


def prompt_body(size: int) -> bytes:
    return json.dumps({"backend": "claude", "prompt": "x" * size}).encode()


@pytest.mark.anyio
async def test_a_lying_content_length_still_gets_413(small_app, runner):
    """A body larger than the limit is refused even when Content-Length claims it is small."""
    big = prompt_body(5000)
    chunks = [big[i:i + 512] for i in range(0, len(big), 512)]
    status, headers, body = await call(small_app, "/api/v1/prompt", chunks,
                                       {"content-length": "40"})
    assert status == 413
    assert headers["content-type"] == "application/problem+json"
    assert json.loads(body)["code"] == "request_too_large"
    assert runner.runs == []


@pytest.mark.anyio
async def test_a_chunked_body_without_content_length_gets_413(small_app, runner):
    """A chunked upload (no Content-Length) is counted as it arrives."""
    big = prompt_body(5000)
    status, _, body = await call(small_app, "/openai/v1/chat/completions",
                                 [big[:600], big[600:1200], big[1200:]], {})
    assert status == 413
    assert json.loads(body)["error"]["code"] == "request_too_large"
    assert runner.runs == []


@pytest.mark.anyio
async def test_a_declared_length_over_the_limit_is_refused_before_reading(small_app):
    """A Content-Length over the limit is refused at once, in the Anthropic envelope there."""
    status, headers, body = await call(small_app, "/anthropic/v1/messages", [],
                                       {"content-length": str(LIMIT + 1)}, stall=True)
    assert status == 413
    assert headers["connection"] == "close"
    assert json.loads(body) == {"type": "error", "error": {
        "type": "request_too_large", "message": f"request body is larger than {LIMIT} bytes"}}


@pytest.mark.anyio
async def test_a_body_that_stops_arriving_gets_408(impatient_app, runner):
    """A body still incomplete after read_timeout_secs is answered 408, not waited for."""
    status, _, body = await call(impatient_app, "/api/v1/prompt", [b'{"backend": "cla'],
                                 {"content-length": "100"}, stall=True)
    assert status == 408
    assert json.loads(body)["code"] == "request_timeout"
    assert runner.runs == []


@pytest.mark.anyio
async def test_a_body_within_the_limit_reaches_the_handler(small_app, runner):
    """A body under the limit, in several chunks, is read by the handler unchanged."""
    body = prompt_body(300)
    status, _, answer = await call(small_app, "/api/v1/prompt", [body[:100], body[100:]],
                                   {"content-length": str(len(body))})
    assert status == 200, answer
    assert runner.runs[0].prompt == "x" * 300


def test_limit_zero_means_unlimited(config, runner):
    """max_request_body_bytes: 0 accepts any size."""
    server = msgspec.structs.replace(config.server, max_request_body_bytes=0)
    services = bootstrap(msgspec.structs.replace(config, server=server), runner=runner,
                         store=FakeSessionStore(), clock=FakeClock(), ids=FakeIds())
    with TestClient(create_app(services)) as c:
        r = c.post("/api/v1/prompt", content=prompt_body(11 * 1024 * 1024))
    assert r.status_code == 200


def test_default_limit_applies_to_a_streamed_upload(client, runner):
    """The default 10 MiB limit holds for a generator (chunked) upload through the client."""
    def chunks():
        for _ in range(11):
            yield b" " * (1024 * 1024)

    r = client.post("/api/v1/prompt", content=chunks())
    assert r.status_code == 413
    assert runner.runs == []
