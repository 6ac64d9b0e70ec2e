"""Structured logs: request id and trace context bound per request, one summary line each."""

from __future__ import annotations

import io
import json
import logging

import pytest
import structlog
from starlette.testclient import TestClient

from clinvk.adapters.http.app import create_app
from clinvk.adapters.logging import configure_logging, get_logger
from clinvk.entrypoints.bootstrap import bootstrap
from tests.fakes import FakeBackendRunner, FakeClock, FakeIds, FakeSessionStore

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT = "b7ad6b7169203331"


@pytest.fixture
def log_stream():
    """configure_logging into a string, JSON lines; restored afterwards."""
    stream = io.StringIO()
    root = logging.getLogger()
    level = root.level
    configure_logging(json=True, stream=stream)
    yield stream
    structlog.reset_defaults()
    for handler in [h for h in root.handlers if getattr(h, "_clinvk_handler", False)]:
        root.removeHandler(handler)
    root.setLevel(level)
    logging.getLogger("uvicorn.access").disabled = False


def lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def summaries(stream: io.StringIO) -> list[dict]:
    return [line for line in lines(stream) if line["event"] == "request"]


class ChattyRunner(FakeBackendRunner):
    """A fake CLI run that logs a line of its own while it runs."""

    async def run(self, spec, on_event=None):
        get_logger("clinvk.test").info("inside the run", backend=spec.backend)
        return await super().run(spec, on_event)


def test_client_request_id_is_returned_and_on_every_line(config, log_stream):
    """X-Request-ID from the client comes back and is on the summary line and on lines
    logged while the request runs (also from child tasks)."""
    services = bootstrap(config, runner=ChattyRunner(), store=FakeSessionStore(),
                         clock=FakeClock(), ids=FakeIds())
    with TestClient(create_app(services)) as client:
        r = client.post("/api/v1/prompt", json={"backend": "codex", "prompt": "hi"},
                        headers={"X-Request-ID": "req-42"})
    assert r.status_code == 200 and r.headers["x-request-id"] == "req-42"
    inside = [line for line in lines(log_stream) if line["event"] == "inside the run"]
    assert inside and inside[0]["request_id"] == "req-42"
    (summary,) = summaries(log_stream)
    assert summary["request_id"] == "req-42"
    assert summary["route"] == "/api/v1/prompt" and summary["status"] == 200
    assert summary["backend"] == "codex" and summary["session_id"] == "s1"
    assert summary["method"] == "POST" and summary["level"] == "info"
    assert isinstance(summary["duration_ms"], float)


@pytest.mark.parametrize("sent", [None, "", "has spaces", "x" * 200, "bad\u00e9id"])
def test_a_missing_or_unsafe_request_id_is_replaced(client, log_stream, sent):
    """Without a usable X-Request-ID the server makes one, returns it and logs it."""
    headers = {"X-Request-ID": sent.encode()} if sent is not None else {}
    r = client.get("/health", headers=headers)
    made = r.headers["x-request-id"]
    assert made != sent and len(made) == 32
    assert summaries(log_stream)[-1]["request_id"] == made


def test_traceparent_is_continued_logged_and_returned(client, log_stream):
    """A valid W3C traceparent keeps its trace id; the answer names this server's span."""
    r = client.get("/api/v1/backends", headers={"traceparent": f"00-{TRACE_ID}-{PARENT}-01"})
    version, trace_id, span_id, flags = r.headers["traceparent"].split("-")
    assert (version, trace_id, flags) == ("00", TRACE_ID, "01")
    assert span_id != PARENT and len(span_id) == 16
    summary = summaries(log_stream)[-1]
    assert summary["trace_id"] == TRACE_ID and summary["parent_span_id"] == PARENT
    assert summary["span_id"] == span_id


@pytest.mark.parametrize("header", [
    "garbage", f"ff-{TRACE_ID}-{PARENT}-01", f"00-{'0' * 32}-{PARENT}-01",
    f"00-{TRACE_ID}-{'0' * 16}-01",
])
def test_an_invalid_traceparent_starts_a_new_trace(client, header):
    """An invalid traceparent is ignored: a fresh trace id, not the client's."""
    r = client.get("/health", headers={"traceparent": header})
    _, trace_id, _, flags = r.headers["traceparent"].split("-")
    assert trace_id != TRACE_ID and trace_id != "0" * 32 and flags == "00"


def test_summary_uses_the_route_template_not_the_path(client, log_stream):
    """Ids in paths stay out of the route field (bounded, and no session ids as labels)."""
    client.get("/api/v1/sessions/some-session-id")
    client.get("/openai/v1/models/claude")
    client.get("/no/such/route")
    routes = [s["route"] for s in summaries(log_stream)]
    assert routes == ["/api/v1/sessions/{session_id}", "/openai/v1/models/{model_id}",
                      "unmatched"]
    assert [s["status"] for s in summaries(log_stream)] == [404, 200, 404]


def test_api_keys_never_reach_the_log(services, log_stream):
    """Neither a valid nor a wrong key appears in any log line."""
    with TestClient(create_app(services, api_keys=["sk-very-secret-1"])) as client:
        client.get("/api/v1/backends", headers={"Authorization": "Bearer sk-very-secret-1"})
        client.get("/api/v1/backends", headers={"X-Api-Key": "sk-wrong-guess-2"})
        client.post("/openai/v1/chat/completions?api_key=sk-in-query-3", json={})
    # Only the server's own lines (the test's HTTP client logs its URLs too).
    text = "\n".join(json.dumps(line) for line in lines(log_stream)
                     if line["logger"].startswith(("clinvk", "uvicorn")))
    assert [s["status"] for s in summaries(log_stream)] == [200, 401, 401]
    for secret in ("sk-very-secret-1", "sk-wrong-guess-2", "sk-in-query-3"):
        assert secret not in text


def test_unexpected_errors_are_logged_with_the_request_id(config, log_stream):
    """A crash inside a handler is one error line with the traceback and the request id;
    the client gets a generic 500."""

    class Broken(FakeBackendRunner):
        async def run(self, spec, on_event=None):
            raise RuntimeError("secret detail /home/user/.ssh")

    services = bootstrap(config, runner=Broken(), store=FakeSessionStore(),
                         clock=FakeClock(), ids=FakeIds())
    with TestClient(create_app(services), raise_server_exceptions=False) as client:
        r = client.post("/api/v1/prompt", json={"backend": "claude", "prompt": "hi"},
                        headers={"X-Request-ID": "req-crash"})
    assert r.status_code == 500 and "secret detail" not in r.text
    (summary,) = summaries(log_stream)
    assert summary["level"] == "error" and summary["status"] == 500
    assert summary["request_id"] == "req-crash"
    assert "RuntimeError" in summary["exception"]


def test_console_renderer_on_a_terminal():
    """On a TTY the lines are for people (structlog's console renderer), not JSON."""

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Tty()
    root = logging.getLogger()
    level = root.level
    try:
        configure_logging(stream=stream)
        get_logger("clinvk.test").info("hello", answer=42)
    finally:
        structlog.reset_defaults()
        for handler in [h for h in root.handlers if getattr(h, "_clinvk_handler", False)]:
            root.removeHandler(handler)
        root.setLevel(level)
        logging.getLogger("uvicorn.access").disabled = False
    text = stream.getvalue()
    assert "hello" in text and "answer" in text
    with pytest.raises(json.JSONDecodeError):
        json.loads(text.splitlines()[0])
