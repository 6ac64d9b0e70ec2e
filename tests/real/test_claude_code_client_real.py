"""The real Claude Code CLI as a *client* of clinvk: `ANTHROPIC_BASE_URL=<clinvk>/anthropic`,
while the CLIs behind clinvk talk to the model double. A turn prints the double's answer
(whichever backend answers), `--continue` carries the conversation, and the answer streams
into Claude Code's own output piece by piece (as whole messages from codex, which prints
no token deltas). The client settings are the recipe in
docs/anthropic.md ("Claude Code as a client")."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.support.clis import cli_path
from tests.support.model_double import assistant_texts, generation_requests, user_texts

pytestmark = pytest.mark.real

#: Only a guard against a hung client; the runs take seconds.
GUARD_SECS = 240

#: What `--model` Claude Code is given per backend (None: its own default model, a
#: `claude-*` name that clinvk routes to the claude backend).
MODELS = {"claude": None, "codex": "codex", "gemini": "gemini"}
#: The first path segment of each backend CLI's model calls, as the double logs them.
API_OF = {"claude": "anthropic", "codex": "openai", "gemini": "gemini"}


@pytest.fixture
def client_env(clinvk_server, tmp_path: Path) -> tuple[dict[str, str], Path]:
    """The environment and cwd of the real `claude` as a client of clinvk (a throwaway
    HOME), as docs/anthropic.md gives them."""
    home, cwd = tmp_path / "client-home", tmp_path / "client-work"
    home.mkdir()
    cwd.mkdir()
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "CLAUDE_CONFIG_DIR": str(home / ".claude"),
        "TMPDIR": str(tmp_path),
        "ANTHROPIC_BASE_URL": clinvk_server.url + "/anthropic",
        "ANTHROPIC_API_KEY": "not-needed",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_AUTOUPDATER": "1",
        "CLAUDE_CODE_MAX_RETRIES": "0",
    }
    return env, cwd


@pytest.fixture
def claude_code(client_env):
    """Run the real `claude` as a client of clinvk; its stdout (it must succeed)."""
    env, cwd = client_env

    def run(*args: str) -> str:
        done = subprocess.run([str(cli_path("claude")), *args], check=False, env=env,
                              cwd=cwd, capture_output=True, text=True, timeout=GUARD_SECS)
        assert done.returncode == 0, (done.stdout, done.stderr[-2000:])
        return done.stdout

    return run


def _model_flag(backend: str) -> list[str]:
    model = MODELS[backend]
    return ["--model", model] if model else []


def _calls_of(double, backend: str) -> list[dict]:
    return [c for c in generation_requests(double.requests()) if c["api"] == API_OF[backend]]


@pytest.mark.parametrize("backend", list(MODELS))
def test_a_turn_prints_the_answer_of_the_backend_behind_clinvk(claude_code, model_double,
                                                               backend):
    """`claude -p hello` through clinvk prints what the backend's model answered, and that
    backend's CLI (not Claude Code) is the one that called the model with the user's words."""
    model_double.set(reply="alpha beta gamma")
    assert claude_code("-p", "hello", *_model_flag(backend)) == "alpha beta gamma\n"
    calls = _calls_of(model_double, backend)
    assert calls, f"the {backend} CLI never called the model double"
    assert any(t.endswith("hello") for t in user_texts(calls[-1]))


@pytest.mark.parametrize("backend", list(MODELS))
def test_continue_carries_the_conversation(claude_code, model_double, backend):
    """A second turn with `--continue` answers, and the backend's model sees the first turn
    (the user's words and the earlier answer) in its prompt."""
    model_double.set(reply="Hello Zed")
    assert claude_code("-p", "My name is Zed.", *_model_flag(backend)) == "Hello Zed\n"
    model_double.set(reply="Your name is Zed")
    second = claude_code("-p", "What is my name?", "--continue", *_model_flag(backend))
    assert second == "Your name is Zed\n"
    last = _calls_of(model_double, backend)[-1]
    seen = "\n".join(user_texts(last) + assistant_texts(last))
    assert "My name is Zed." in seen and "Hello Zed" in seen
    assert any(t.rstrip().endswith("What is my name?") for t in user_texts(last))


def _text_delta(event: dict) -> str | None:
    """The text of a `text_delta` in one line of Claude Code's stream-json output."""
    inner = event.get("event", {}) if event.get("type") == "stream_event" else {}
    if inner.get("type") == "content_block_delta" and inner["delta"]["type"] == "text_delta":
        return inner["delta"]["text"]
    return None


def _deltas(lines, on_text: str | None = None, then=None) -> tuple[list[str], str]:
    """(the text deltas, the result text) of Claude Code's stream-json output lines; once
    the deltas add up to `on_text`, `then()` is called."""
    deltas: list[str] = []
    for line in lines:
        event = json.loads(line)
        delta = _text_delta(event)
        if delta is not None:
            deltas.append(delta)
            if then is not None and "".join(deltas) == on_text:
                then()
                then = None
        if event.get("type") == "result":
            return deltas, event["result"]
    raise AssertionError("no result event")


STREAM_ARGS = ("--output-format", "stream-json", "--verbose", "--include-partial-messages")


@pytest.mark.parametrize("backend", ["claude", "gemini"])
def test_the_answer_streams_into_claude_codes_output(client_env, model_double, backend):
    """With a backend that streams tokens, Claude Code reports the answer's first words
    while the model still holds back the rest (so they were streamed, not buffered), then
    the rest; the deltas add up to the whole answer."""
    env, cwd = client_env
    model_double.set(words=6)
    model_double.hold_after(2)  # the model sends "w0 w1", then waits for release()
    process = subprocess.Popen(
        [str(cli_path("claude")), "-p", "count", *STREAM_ARGS, *_model_flag(backend)],
        env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL, text=True,
    )
    try:
        deltas, result = _deltas(process.stdout, on_text="w0 w1", then=model_double.release)
    finally:
        model_double.release()  # never leave the model holding, even on a failure
        process.communicate(timeout=GUARD_SECS)
    assert process.returncode == 0
    assert len(deltas) > 2 and "".join(deltas) == result == "w0 w1 w2 w3 w4 w5"


def test_a_codex_backend_answer_reaches_claude_codes_output_whole(claude_code, model_double):
    """The codex CLI behind clinvk prints whole messages (no token deltas), so Claude Code
    gets its answer as one delta, which is the whole answer."""
    model_double.set(words=6)
    out = claude_code("-p", "count", *STREAM_ARGS, *_model_flag("codex"))
    deltas, result = _deltas(out.splitlines())
    assert deltas == ["w0 w1 w2 w3 w4 w5"] and result == "w0 w1 w2 w3 w4 w5"
