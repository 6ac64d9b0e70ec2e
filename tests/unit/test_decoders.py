"""Each CLI decoder against real captured output (tests/fixtures/cli-samples)."""

from __future__ import annotations

import pathlib

import pytest

from clinvk.adapters.backends.claude import ClaudeDecoder
from clinvk.adapters.backends.codex import CodexDecoder
from clinvk.adapters.backends.gemini import GeminiDecoder
from clinvk.domain import events as ev
from clinvk.domain.errors import BackendFailed
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
    assert any(isinstance(e, ev.Notice) for e in events) or status == "401"
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
