"""Property tests of the backend adapters: prompts survive argv/stdin, decoders never crash."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from clinvk.adapters.backends.base import ARGV_PROMPT_LIMIT
from clinvk.adapters.backends.claude import ClaudeBackend
from clinvk.adapters.backends.codex import CodexBackend
from clinvk.adapters.backends.gemini import GeminiBackend
from clinvk.domain.config import BackendConfig
from clinvk.domain.errors import BackendFailed
from clinvk.domain.models import RunSpec
from tests.strategies import cli_lines, prompt_text

BACKENDS = [ClaudeBackend(), CodexBackend(), GeminiBackend()]


def _prompt_as_sent(backend, prompt: str) -> str:
    spec = RunSpec(backend=backend.name, prompt=prompt, workdir="/tmp", resume_id="r1")
    inv = backend.invocation(spec, BackendConfig(), backend.name, None)
    if inv.stdin is not None:
        assert not any(prompt in a for a in inv.argv)
        return inv.stdin.decode("utf-8")
    last = inv.argv[-1]
    if backend.name == "gemini":
        assert last.startswith("--prompt=")
        return last[len("--prompt="):]
    assert inv.argv[-2] == "--"  # so a leading '-' can never be read as a flag
    return last


@settings(max_examples=150)
@given(prompt=prompt_text, backend=st.sampled_from(BACKENDS))
def test_any_prompt_reaches_the_cli_verbatim(prompt, backend):
    """Whatever the prompt holds (leading '-', quotes, newlines), the CLI receives it unchanged,
    as the one argument after `--`/`--prompt=` or on stdin."""
    assert _prompt_as_sent(backend, prompt) == prompt


@settings(max_examples=20)
@given(size=st.integers(min_value=ARGV_PROMPT_LIMIT + 1, max_value=1_100_000),
       backend=st.sampled_from(BACKENDS))
def test_large_prompts_go_on_stdin(size, backend):
    """Prompts too big for one argv element travel on stdin, byte for byte."""
    prompt = "x" * size
    spec = RunSpec(backend=backend.name, prompt=prompt, workdir="/tmp")
    inv = backend.invocation(spec, BackendConfig(), backend.name, None)
    assert inv.stdin == prompt.encode()
    assert all(len(a) < ARGV_PROMPT_LIMIT for a in inv.argv)


@settings(max_examples=300)
@given(lines=st.lists(cli_lines, max_size=12), backend=st.sampled_from(BACKENDS),
       exit_code=st.integers(min_value=-15, max_value=255))
def test_decoders_never_crash_on_arbitrary_output(lines, backend, exit_code):
    """Any sequence of output lines decodes into events and ends in a result or BackendFailed."""
    decoder = backend.decoder(RunSpec(backend=backend.name, prompt="p", workdir="/tmp"), None)
    for line in lines:
        decoder.feed(line)
    try:
        decoder.finish(exit_code=exit_code, stderr="some stderr", duration_ms=1)
    except BackendFailed as exc:
        assert exc.message
