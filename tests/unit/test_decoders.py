"""Each CLI decoder against real captured output (tests/fixtures/cli-samples)."""

from __future__ import annotations

import pathlib

import pytest

from clinvk.adapters.backends.claude import ClaudeDecoder
from clinvk.adapters.backends.codex import CodexDecoder
from clinvk.adapters.backends.gemini import GeminiDecoder
from clinvk.domain import events as ev
from clinvk.domain.errors import BackendFailed, BackendLimited, BackendOverloaded
from clinvk.domain.models import RunSpec, TokenUsage

SAMPLES = pathlib.Path(__file__).resolve().parents[1] / "fixtures" / "cli-samples"
SPEC = RunSpec(backend="x", prompt="Say hi", workdir="/tmp", model="m")
DECODERS = {"claude": ClaudeDecoder, "codex": CodexDecoder, "gemini": GeminiDecoder}


def decode(backend: str, name: str, exit_code: int = 0, stderr: str = ""):
    decoder = DECODERS[backend](SPEC)
    events = []
    for line in (SAMPLES / backend / name).read_bytes().splitlines():
        if line.strip():
            events += decoder.feed(line)
    return decoder, events


def test_claude_stream_gives_init_deltas_message_usage():
    """Claude's partial-message stream decodes into init, one delta per text_delta, the
    message, and usage from the result."""
    decoder, events = decode("claude", "stream-json-partial.jsonl")
    assert isinstance(events[0], ev.Init)
    assert events[0].backend_session_id == "28028df1-cbaa-4e59-8312-9810e0f30c66"
    assert [e.text for e in events if isinstance(e, ev.TextDelta)] == ["w0", " w1", " w2", " w3", " w4"]
    result = decoder.finish(exit_code=0, stderr="", duration_ms=1)
    assert result.output == "w0 w1 w2 w3 w4"
    assert result.usage == TokenUsage(input_tokens=7, output_tokens=5)
    assert result.model == "claude-opus-4-8"


@pytest.mark.parametrize("status", ["401", "429", "500"])
def test_claude_api_error_is_a_failure_with_its_message(status):
    """Claude's result with is_error (even when subtype says success) becomes BackendFailed."""
    decoder, events = decode("claude", f"err-{status}-stream-json.jsonl")
    assert any(isinstance(e, ev.Retry) for e in events) or status == "401"
    with pytest.raises(BackendFailed) as info:
        decoder.finish(exit_code=1, stderr="", duration_ms=1)
    assert f"injected {status}" in info.value.message
    assert f"API status {status}" in info.value.message


def test_claude_interrupted_run_is_not_success():
    """A run claude aborted (SIGINT, exit 0) is a failure, never a success."""
    decoder, _ = decode("claude", "sigint-stream-json.jsonl")
    with pytest.raises(BackendFailed):
        decoder.finish(exit_code=0, stderr="", duration_ms=1)


def test_claude_without_result_reports_stderr():
    """A claude run that printed no result fails with its stderr."""
    decoder = ClaudeDecoder(SPEC)
    stderr = (SAMPLES / "claude" / "resume-unknown-session.stderr.txt").read_text()
    with pytest.raises(BackendFailed) as info:
        decoder.finish(exit_code=1, stderr=stderr, duration_ms=1)
    assert "No conversation found" in info.value.message


def test_codex_json_gives_thread_message_and_cumulative_usage():
    """Codex JSONL decodes into init (thread id), the whole message and cumulative usage."""
    decoder, events = decode("codex", "json.jsonl")
    assert events[0] == ev.Init(backend_session_id="01a2147e-3637-7291-94c4-2b3db6d9fc4f", model="m")
    assert ev.Message(text="w0 w1 w2 w3 w4") in events
    result = decoder.finish(exit_code=0, stderr="", duration_ms=1)
    assert result.usage_is_cumulative and result.usage.output_tokens == 5


def test_codex_turn_failed_is_a_failure():
    """Codex's turn.failed becomes BackendFailed with its message."""
    decoder, _ = decode("codex", "err-500-json-noretry.jsonl")
    with pytest.raises(BackendFailed) as info:
        decoder.finish(exit_code=1, stderr="", duration_ms=1)
    assert "high demand" in info.value.message


def test_codex_killed_mid_turn_is_a_failure():
    """A codex run that ended without turn.completed is never a success."""
    decoder, _ = decode("codex", "sigterm-json.jsonl")
    with pytest.raises(BackendFailed):
        decoder.finish(exit_code=-15, stderr="", duration_ms=1)


def test_codex_unknown_resume_reports_stderr():
    """Codex's own error on stderr is the failure message."""
    decoder = CodexDecoder(SPEC)
    stderr = (SAMPLES / "codex" / "resume-unknown-thread.stderr.txt").read_text()
    with pytest.raises(BackendFailed) as info:
        decoder.finish(exit_code=1, stderr=stderr, duration_ms=1)
    assert "no rollout found" in info.value.message


def test_gemini_stream_gives_deltas_and_usage():
    """Gemini stream-json decodes into init, deltas and the usage of its result."""
    decoder, events = decode("gemini", "stream-json.jsonl")
    assert "".join(e.text for e in events if isinstance(e, ev.TextDelta)) == "w0 w1 w2 w3 w4"
    result = decoder.finish(exit_code=0, stderr="", duration_ms=1)
    assert result.usage == TokenUsage(input_tokens=7, output_tokens=5)
    assert result.model == "gemini-mock"  # the model that answered, not the one asked for


@pytest.mark.parametrize(("status", "code"), [("401", 145), ("500", 244)])
def test_gemini_error_result_names_the_http_status(status, code):
    """Gemini's error result fails with its message and the HTTP status from its exit code."""
    decoder, _ = decode("gemini", f"err-{status}-stream-json.jsonl")
    with pytest.raises(BackendFailed) as info:
        decoder.finish(exit_code=code, stderr="", duration_ms=1)
    assert f"injected {status}" in info.value.message
    assert f"API status {status}" in info.value.message


def test_gemini_cancelled_without_result_is_not_success():
    """Gemini exits 0 when its group is terminated; without a result that is a failure."""
    decoder, _ = decode("gemini", "sigterm-pgroup-stream-json.jsonl")
    with pytest.raises(BackendFailed):
        decoder.finish(exit_code=0, stderr="", duration_ms=1)


def stderr_of(backend: str, name: str) -> str:
    path = SAMPLES / backend / f"{name}.stderr.txt"
    return path.read_text() if path.exists() else ""


def failure(backend: str, name: str, exit_code: int) -> BackendFailed:
    """The error a recorded failing run ends in (stdout lines, then stderr, then finish)."""
    decoder, _ = decode(backend, f"{name}.jsonl")
    with pytest.raises(BackendFailed) as info:
        decoder.finish(exit_code=exit_code, stderr=stderr_of(backend, name), duration_ms=1)
    return info.value


# -- retries are visible ------------------------------------------------------------------


def test_claude_api_retry_lines_are_retry_events():
    """Each `system/api_retry` line is a Retry: the attempt that failed, calls in all
    (max_retries + 1), the API status, claude's error kind and the delay in seconds."""
    _, events = decode("claude", "retry-500-retries2.jsonl")
    retries = [e for e in events if isinstance(e, ev.Retry)]
    assert [(r.attempt, r.max_attempts, r.status, r.message) for r in retries] == [
        (1, 3, 500, "server_error"), (2, 3, 500, "server_error")]
    assert all(r.delay_secs is not None and 0 < r.delay_secs < 60 for r in retries)


def test_claude_retry_that_then_succeeds_is_a_success():
    """One failed call, one retry event, then claude's answer."""
    decoder, events = decode("claude", "retry-500-then-ok.jsonl")
    assert [e.attempt for e in events if isinstance(e, ev.Retry)] == [1]
    assert decoder.finish(exit_code=0, stderr="", duration_ms=1).output


def test_codex_reconnecting_lines_are_retry_events():
    """codex's `Reconnecting... k/N (cause)` errors are Retry events with the status in
    the cause; the failure after them is still the turn's."""
    decoder, events = decode("codex", "retry-503-retries2.jsonl")
    retries = [e for e in events if isinstance(e, ev.Retry)]
    assert [(r.attempt, r.max_attempts, r.status) for r in retries] == [(1, 3, 503), (2, 3, 503)]
    assert "injected 503" in retries[0].message
    assert not any(isinstance(e, ev.Notice) and "Reconnecting" in e.message for e in events)


def test_codex_waiting_for_network_is_a_retry_counted_by_clinvk():
    """A reconnect without counts (connection refused) is numbered by clinvk."""
    decoder = CodexDecoder(SPEC)
    line = b'{"type":"error","message":"Reconnecting... waiting for network (Connection failed)"}'
    first, second = decoder.feed(line), decoder.feed(line)
    assert [e.attempt for e in first + second] == [1, 2]
    assert first[0].max_attempts is None and first[0].message == "Connection failed"


def gemini_stderr_events(name: str, max_attempts: int | None = 3) -> list:
    decoder = GeminiDecoder(SPEC, max_attempts=max_attempts)
    events = []
    for line in stderr_of("gemini", name).splitlines():
        events += decoder.feed_stderr(line.encode())
    return events


def test_gemini_backoff_notices_on_stderr_are_retry_events():
    """`Attempt N failed with status 500. Retrying with backoff...` is a Retry per
    retried attempt; the last attempt ("Max attempts reached") is not."""
    events = gemini_stderr_events("retry-500-retries2")
    assert [(e.attempt, e.max_attempts, e.status) for e in events] == [(1, 3, 500), (2, 3, 500)]


def test_gemini_retry_after_notices_span_lines():
    """`Attempt N failed: <message>` with `Retrying after 5476ms...` on the next line is
    one Retry with the delay gemini waits and the API's message."""
    events = gemini_stderr_events("retry-429-retry-info-retries2")
    assert [e.attempt for e in events] == [1, 2]
    assert events[0].delay_secs == 5.476
    assert "injected 429" in events[0].message


def test_gemini_notices_other_stderr_lines_are_ignored():
    """Stack traces, warnings and the final error are not retries."""
    assert gemini_stderr_events("limit-429") == []
    assert gemini_stderr_events("stream-json") == []


# -- limits are recognised --------------------------------------------------------------


@pytest.mark.parametrize(
    ("backend", "name", "exit_code", "kind", "retry_after"),
    [
        ("claude", "limit-429", 1, "rate", None),
        ("claude", "limit-400-credit", 1, "usage", None),
        ("codex", "limit-429", 1, "rate", None),
        ("codex", "limit-insufficient-quota", 1, "usage", None),
        ("gemini", "limit-429", 173, "rate", None),
        ("gemini", "limit-429-retry-info", 173, "rate", 37),
        ("gemini", "limit-429-quota-daily", 173, "usage", None),
    ],
)
def test_limits_are_backend_limited(backend, name, exit_code, kind, retry_after):
    """A CLI's rate or usage/quota limit becomes BackendLimited with the kind its words
    say, and the reset time when the CLI printed one."""
    error = failure(backend, name, exit_code)
    assert isinstance(error, BackendLimited)
    assert (error.kind, error.retry_after) == (kind, retry_after)


@pytest.mark.parametrize(
    ("backend", "name", "exit_code", "status"),
    [
        ("claude", "limit-529", 1, 529),
        ("claude", "limit-503", 1, 503),
        ("codex", "limit-503", 1, 503),
        ("codex", "limit-529", 1, 529),
        ("gemini", "limit-503", 247, 503),
        ("gemini", "limit-529", 17, 529),  # exit code 529 % 256: the status comes from the body
    ],
)
def test_overloaded_apis_are_backend_overloaded(backend, name, exit_code, status):
    """An overloaded model API (529, 503) becomes BackendOverloaded with its status."""
    error = failure(backend, name, exit_code)
    assert isinstance(error, BackendOverloaded)
    assert error.upstream_status == status


@pytest.mark.parametrize(
    ("backend", "name", "exit_code", "status"),
    [
        ("claude", "err-500-stream-json", 1, 500),
        ("claude", "err-401-stream-json", 1, 401),
        ("codex", "err-500-json-noretry", 1, 500),
        ("codex", "err-401-json-noretry", 1, 401),
        ("gemini", "err-500-stream-json", 244, 500),
        ("gemini", "err-401-stream-json", 145, 401),
    ],
)
def test_other_api_errors_carry_the_upstream_status(backend, name, exit_code, status):
    """Any other API error is a plain BackendFailed carrying the API's status, so the
    fallback policy can tell a failing API (5xx) from a refused request (401)."""
    error = failure(backend, name, exit_code)
    assert type(error) is BackendFailed
    assert error.upstream_status == status


def test_failures_without_an_api_status_stay_plain():
    """A CLI failure that names no API status (unknown session) has none."""
    decoder = ClaudeDecoder(SPEC)
    with pytest.raises(BackendFailed) as info:
        decoder.finish(exit_code=1, stderr=stderr_of("claude", "resume-unknown-session"),
                       duration_ms=1)
    assert type(info.value) is BackendFailed and info.value.upstream_status is None


def test_codex_usage_limit_reset_time_is_retry_after():
    """codex's "try again at 6:20 PM" (local time) gives the seconds until then."""
    import datetime as dt

    now = dt.datetime(2026, 11, 30, 17, 10, tzinfo=dt.UTC)
    decoder, _ = decode("codex", "limit-usage-limit-resets-at.jsonl")
    decoder._now = lambda: now
    with pytest.raises(BackendLimited) as info:
        decoder.finish(exit_code=1, stderr="", duration_ms=1)
    assert info.value.kind == "usage"
    assert info.value.retry_after == 70 * 60


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("try again at 6:20 PM.", 70 * 60),
        ("try again at 5:00 PM.", 23 * 3600 + 50 * 60),  # already past today: tomorrow
        ("try again at 12:05 AM.", 6 * 3600 + 55 * 60),
        ("try again at Dec 3rd, 2026 5:10 PM.", 3 * 86400),
        ("try again in 90 seconds", 90),
        ("try again later.", None),
    ],
)
def test_codex_reset_times(text, seconds):
    """Both of codex's reset formats, relative to a fixed local time."""
    import datetime as dt

    from clinvk.adapters.backends.codex import reset_in

    now = dt.datetime(2026, 11, 30, 17, 10, tzinfo=dt.UTC)
    assert reset_in(text, now) == seconds


def test_claude_subscription_limit_event_gives_the_reset_time():
    """A rejected `rate_limit_event` (claude.ai logins) makes the 429 a usage limit that
    resets at its `resetsAt` (read from claude's bundle; API keys never see it)."""
    decoder = ClaudeDecoder(SPEC, now=lambda: 1_000_000.0)
    event = {"type": "rate_limit_event", "rate_limit_info": {
        "status": "rejected", "resetsAt": 1_003_600, "rateLimitType": "five_hour"}}
    for line in (SAMPLES / "claude" / "limit-429.jsonl").read_bytes().splitlines()[:1]:
        decoder.feed(line)
    import json

    decoder.feed(json.dumps(event).encode())
    for line in (SAMPLES / "claude" / "limit-429.jsonl").read_bytes().splitlines()[1:]:
        decoder.feed(line)
    with pytest.raises(BackendLimited) as info:
        decoder.finish(exit_code=1, stderr="", duration_ms=1)
    assert (info.value.kind, info.value.retry_after) == ("usage", 3600)
