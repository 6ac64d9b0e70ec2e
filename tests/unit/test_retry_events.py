"""Retries are visible: stderr lines reach the decoder as they come, native streams carry
`retry` lines, the OpenAI and Anthropic streams go on unharmed, and /metrics counts them."""

from __future__ import annotations

import json
import os

import anyio
import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from clinvk.adapters.backends.process import STDERR_LINE_BYTES, run_process
from clinvk.adapters.http.app import create_app
from clinvk.adapters.metrics import Metrics
from clinvk.domain import events as ev
from clinvk.entrypoints.bootstrap import bootstrap
from tests.fakes import FakeBackendRunner, FakeClock, FakeIds, FakeSessionStore

ENV = {"PATH": os.environ["PATH"]}


async def _lines(script: str, flag: str = "/nonexistent") -> tuple[list[tuple[str, bytes]], str]:
    """Run `script`; each line it prints is recorded as ("out"|"err", line). The stderr
    handler creates the file `$FLAG` once it has seen the line `partial line`."""
    seen: list[tuple[str, bytes]] = []

    async def out(line: bytes) -> None:
        seen.append(("out", line))

    async def err(line: bytes) -> None:
        seen.append(("err", line))
        if line == b"partial line":
            open(flag, "w").close()

    with anyio.fail_after(60):  # a guard against a hang, not a speed check
        outcome = await run_process(
            ["sh", "-c", script], cwd="/tmp", env={**ENV, "FLAG": flag}, stdin=None,
            on_line=out, timeout=None, idle_timeout=None, on_stderr_line=err,
        )
    return seen, outcome.stderr


@pytest.mark.anyio
async def test_stderr_lines_arrive_while_the_cli_runs_and_the_tail_is_kept(tmp_path):
    """Each stderr line reaches the handler before the stdout line printed after it (so a
    retry notice is streamed while the CLI waits), and the stderr tail is still returned."""
    # The CLI prints its stdout line only once the handler saw the stderr line (it waits
    # for a file the test's handler creates), so the order is caused, not timed.
    seen, tail = await _lines(
        "echo 'Attempt 1 failed' >&2; printf 'partial' >&2; printf ' line\\n' >&2; "
        "while [ ! -e \"$FLAG\" ]; do sleep 0.01; done; echo out",
        flag=str(tmp_path / "flag"),
    )
    assert seen == [("err", b"Attempt 1 failed"), ("err", b"partial line"), ("out", b"out")]
    assert "Attempt 1 failed" in tail


@pytest.mark.anyio
async def test_an_endless_stderr_line_is_cut_not_buffered():
    """A stderr "line" without a newline is handed over in bounded pieces."""
    size = STDERR_LINE_BYTES * 3
    seen, _ = await _lines(f"head -c {size} /dev/zero | tr '\\\\0' x >&2")
    pieces = [line for kind, line in seen if kind == "err"]
    assert sum(len(p) for p in pieces) == size
    assert max(len(p) for p in pieces) <= STDERR_LINE_BYTES


class RetryingRunner(FakeBackendRunner):
    """Reports two failed attempts right after its init event, then answers."""

    async def run(self, spec, on_event=None):
        sink = on_event

        async def with_retries(event):
            await sink(event)
            if isinstance(event, ev.Init):
                for attempt in (1, 2):
                    await sink(ev.Retry(attempt=attempt, max_attempts=3, status=500,
                                        message="server_error", delay_secs=0.5))

        return await super().run(spec, with_retries if sink is not None else None)


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
def client(config, metrics):
    services = bootstrap(config, runner=RetryingRunner(), store=FakeSessionStore(),
                         clock=FakeClock(), ids=FakeIds(), metrics=metrics)
    with TestClient(create_app(services, metrics=metrics)) as c:
        yield c


def _retries_counted(client) -> dict[str, float]:
    text = client.get("/metrics").text
    return {
        s.labels["backend"]: s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "clinvk_backend_retries_total"
    }


def test_native_stream_carries_retry_lines_before_the_answer(client):
    """An NDJSON stream has one `retry` line per retry (attempt, status, delay), after
    init and before the first text; /metrics counts them for the backend."""
    body = {"backend": "gemini", "prompt": "hi", "output_format": "stream-json"}
    with client.stream("POST", "/api/v1/prompt", json=body) as r:
        events = [json.loads(line) for line in r.iter_lines() if line.strip()]
    types = [e["type"] for e in events if e["type"] != "heartbeat"]
    assert types[:3] == ["init", "retry", "retry"]
    assert types.index("retry") < types.index("delta")
    first = next(e["content"] for e in events if e["type"] == "retry")
    assert (first["attempt"], first["max_attempts"], first["status"]) == (1, 3, 500)
    assert first["delay_secs"] == 0.5
    assert _retries_counted(client) == {"gemini": 2.0}


def test_openai_and_anthropic_streams_ignore_retries(client):
    """The OpenAI and Anthropic streams carry the answer and no error when the CLI
    reported retries along the way (they have no event for them)."""
    chat = {"model": "claude", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    with client.stream("POST", "/openai/v1/chat/completions", json=chat) as r:
        text = r.read().decode()
    assert r.status_code == 200 and "hello" in text and '"error"' not in text
    assert text.rstrip().endswith("data: [DONE]")
    message = {"model": "claude", "max_tokens": 50, "stream": True,
               "messages": [{"role": "user", "content": "hi"}]}
    with client.stream("POST", "/anthropic/v1/messages", json=message) as r:
        text = r.read().decode()
    assert r.status_code == 200 and "message_stop" in text and "event: error" not in text
    assert _retries_counted(client) == {"claude": 4.0}
