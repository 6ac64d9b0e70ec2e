"""The real Claude Code CLI as a *client* of clinvk: `ANTHROPIC_BASE_URL=<clinvk>/anthropic`,
while the CLIs behind clinvk talk to the model double. A turn prints the double's answer
(whichever backend answers), `--continue` carries the conversation, and the answer streams
into Claude Code's own output piece by piece. The client settings are the recipe in
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
def claude_code(clinvk_server, tmp_path: Path):
    """Run the real `claude` as a client of clinvk, with a throwaway HOME and cwd."""
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


def test_the_answer_streams_into_claude_codes_output(claude_code, model_double):
    """With partial messages on, Claude Code reports the answer as several text deltas as
    clinvk streams them, which add up to the whole answer."""
    model_double.set(words=6)
    out = claude_code("-p", "count", "--output-format", "stream-json", "--verbose",
                      "--include-partial-messages")
    deltas = []
    for line in out.splitlines():
        event = json.loads(line)
        inner = event.get("event", {}) if event.get("type") == "stream_event" else {}
        if inner.get("type") == "content_block_delta" and inner["delta"]["type"] == "text_delta":
            deltas.append(inner["delta"]["text"])
    assert len(deltas) > 1 and "".join(deltas) == "w0 w1 w2 w3 w4 w5"
    result = json.loads(out.splitlines()[-1])
    assert result["type"] == "result" and result["result"] == "w0 w1 w2 w3 w4 w5"
