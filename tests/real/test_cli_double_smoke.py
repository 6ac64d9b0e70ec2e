"""Run the real claude/codex/gemini CLIs directly against the model double.

These prove that tests/support/clis.py really points each pinned CLI at the double, that
the double speaks each API well enough for the CLI's streaming machine mode, and that the
fast-failure settings hold. The server's own end-to-end tests build on exactly this.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.model_double import (
    ModelDouble,
    conversation,
    generation_requests,
    user_texts,
)

pytestmark = pytest.mark.real

# Quotes, a newline, shell metacharacters and non-ASCII: the prompt must arrive verbatim.
PROMPT = 'Echo this: "naïve café" 🦊\nsecond line with $HOME, `ticks` and a trailing dot.'
REPLY = "Hello from the double, café 🦊 — three, two, one."

# Inherited variables that could point a CLI somewhere else or change its output.
_FOREIGN_ENV_PREFIXES = ("ANTHROPIC_", "CLAUDE_", "CODEX_", "OPENAI_", "GEMINI_", "GOOGLE_")
_FOREIGN_ENV = {"RUST_BACKTRACE", "RUST_LOG", "NODE_OPTIONS"}


@dataclass
class Run:
    argv: list[str]
    rc: int
    events: list[dict[str, Any]]
    stderr: str
    wall_s: float

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("type") == kind]

    def describe(self) -> str:
        return (f"rc={self.rc} wall={self.wall_s:.2f}s argv={self.argv}\n"
                f"events={json.dumps(self.events)[:3000]}\nstderr={self.stderr[-3000:]}")


def run_cli(settings: dict, args: list[str], cwd: Path, timeout: float = 60) -> Run:
    """Run one CLI invocation the way the server will: argv list, no stdin, own group."""
    env = {k: v for k, v in os.environ.items()
           if k not in _FOREIGN_ENV and not k.startswith(_FOREIGN_ENV_PREFIXES)}
    env.update(settings["env"])
    argv = [settings["command"], *args]
    start = time.monotonic()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=cwd, env=env, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"{argv[0]} did not finish in {timeout}s\nstdout={out[-2000:]!r}\n"
                    f"stderr={err[-2000:]!r}")
    finally:
        try:  # helpers the CLI left behind in its process group
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    wall = time.monotonic() - start
    events = []
    for line in out.decode().splitlines():
        if line.strip():
            try:
                events.append(json.loads(line))
            except ValueError:
                pytest.fail(f"non-JSON line on stdout of {argv}: {line!r}\n"
                            f"stderr={err.decode()[-2000:]}")
    return Run(argv, proc.returncode, events, err.decode(), wall)


# -- per-CLI argv, in each CLI's streaming machine mode ----------------------------------


def claude_args(s: dict, prompt: str, resume: str | None = None) -> list[str]:
    args = [*s["extra_flags"], "--output-format", "stream-json", "--verbose",
            "--include-partial-messages"]
    if s["model"]:
        args += ["--model", s["model"]]
    if resume:
        args += ["--resume", resume]
    return [*args, "-p", prompt]


def codex_args(s: dict, prompt: str, resume: str | None = None) -> list[str]:
    # extra_flags go before `resume`: codex exec accepts its flags before the subcommand.
    args = ["exec", "--json", "--skip-git-repo-check", *s["extra_flags"]]
    if s["model"]:
        args += ["-m", s["model"]]
    return [*args, *(["resume", resume] if resume else []), prompt]


def gemini_args(s: dict, prompt: str, resume: str | None = None) -> list[str]:
    args = [*s["extra_flags"], "-m", s["model"], "-o", "stream-json"]
    if resume:
        args += ["--resume", resume]
    return [*args, "-p", prompt]


def claude_outcome(run: Run) -> tuple[str, str, str]:
    """(final text, concatenated deltas, session id) from claude stream-json events."""
    (result,) = run.of_type("result")
    deltas = "".join(e["event"]["delta"]["text"] for e in run.of_type("stream_event")
                     if e["event"]["type"] == "content_block_delta")
    return result["result"], deltas, result["session_id"]


def codex_outcome(run: Run) -> tuple[str, str, str]:
    """codex --json has no deltas: the final message arrives whole in item.completed."""
    (message,) = [e["item"]["text"] for e in run.of_type("item.completed")
                  if e["item"]["type"] == "agent_message"]
    assert run.of_type("turn.completed"), run.describe()
    return message, message, run.of_type("thread.started")[0]["thread_id"]


def gemini_outcome(run: Run) -> tuple[str, str, str]:
    (result,) = run.of_type("result")
    assert result["status"] == "success", run.describe()
    deltas = "".join(e["content"] for e in run.of_type("message")
                     if e.get("role") == "assistant" and e.get("delta"))
    return deltas, deltas, run.of_type("init")[0]["session_id"]


CLIS = {
    "claude": (claude_args, claude_outcome, "/v1/messages"),
    "codex": (codex_args, codex_outcome, "/v1/responses"),
    "gemini": (gemini_args, gemini_outcome, ":streamGenerateContent"),
}


def check_reply(name: str, cli_settings: dict, double: ModelDouble, cwd: Path) -> None:
    make_args, outcome, api_path = CLIS[name]
    double.set(reply=REPLY, delay_ms=20)
    run = run_cli(cli_settings[name], make_args(cli_settings[name], PROMPT), cwd)
    assert run.rc == 0, run.describe()
    final, deltas, _ = outcome(run)
    assert final == REPLY, run.describe()
    assert deltas == REPLY, run.describe()
    log = double.requests()
    assert all(r["api"] for r in log), f"calls the double does not know: {log}"
    (request,) = generation_requests(log)
    assert api_path in request["path"]
    assert PROMPT in user_texts(request), user_texts(request)


def check_fail_fast(name: str, cli_settings: dict, double: ModelDouble, cwd: Path) -> Run:
    make_args, _, _ = CLIS[name]
    double.set(fail_status=500)
    run = run_cli(cli_settings[name], make_args(cli_settings[name], PROMPT), cwd)
    assert run.rc != 0, run.describe()
    # One request: the retry settings in clis.py are in force, so the CLI gives up at once
    # instead of backing off for minutes (which run_cli's hang guard would also catch).
    assert len(generation_requests(double.requests())) == 1, double.requests()
    return run


def check_resume(name: str, cli_settings: dict, double: ModelDouble, cwd: Path) -> None:
    make_args, outcome, _ = CLIS[name]
    s = cli_settings[name]
    first = run_cli(s, make_args(s, "My name is Zed. Remember it."), cwd)
    assert first.rc == 0, first.describe()
    session = outcome(first)[2]
    second = run_cli(s, make_args(s, "What is my name?", resume=session), cwd)
    assert second.rc == 0, second.describe()
    assert outcome(second)[2] == session, second.describe()
    turns = [t for t in conversation(generation_requests(double.requests())[-1])
             if t[0] in ("user", "assistant")]
    wanted = [("user", "My name is Zed. Remember it."), ("assistant", "w0 w1 w2 w3 w4"),
              ("user", "What is my name?")]
    assert [t for t in turns if t in wanted] == wanted, turns


# -- claude ---------------------------------------------------------------------------------


def test_claude_streams_the_double_reply(cli_settings, model_double, workdir):
    """claude -p in stream-json mode streams the double's reply and sends the prompt verbatim."""
    check_reply("claude", cli_settings, model_double, workdir)


def test_claude_fails_fast_on_http_500(cli_settings, model_double, workdir):
    """claude reports an injected HTTP 500 as an error result without retrying."""
    run = check_fail_fast("claude", cli_settings, model_double, workdir)
    (result,) = run.of_type("result")
    assert result["is_error"] is True and result["api_error_status"] == 500, run.describe()
    assert "injected 500" in result["result"], run.describe()


def test_claude_resume_sends_earlier_turns(cli_settings, model_double, workdir):
    """claude --resume keeps the session id and re-sends the first turn to the model."""
    check_resume("claude", cli_settings, model_double, workdir)


# -- codex ----------------------------------------------------------------------------------


def test_codex_returns_the_double_reply(cli_settings, model_double, workdir):
    """codex exec --json returns the double's reply as one agent message, prompt verbatim."""
    check_reply("codex", cli_settings, model_double, workdir)


def test_codex_fails_fast_on_http_500(cli_settings, model_double, workdir):
    """codex emits turn.failed for an injected HTTP 500 without retrying."""
    run = check_fail_fast("codex", cli_settings, model_double, workdir)
    assert run.of_type("turn.failed"), run.describe()


def test_codex_resume_with_flags_before_subcommand(cli_settings, model_double, workdir):
    """codex exec FLAGS resume ID PROMPT keeps the thread id and re-sends the first turn."""
    check_resume("codex", cli_settings, model_double, workdir)


# -- gemini ---------------------------------------------------------------------------------


def test_gemini_streams_the_double_reply(cli_settings, model_double, workdir):
    """gemini -o stream-json streams the double's reply and sends the prompt verbatim."""
    check_reply("gemini", cli_settings, model_double, workdir)


def test_gemini_fails_fast_on_http_500(cli_settings, model_double, workdir):
    """gemini reports an injected HTTP 500 as an error result without retrying."""
    run = check_fail_fast("gemini", cli_settings, model_double, workdir)
    (result,) = run.of_type("result")
    assert result["status"] == "error", run.describe()
    assert "injected 500" in result["error"]["message"], run.describe()


def test_gemini_resume_sends_earlier_turns(cli_settings, model_double, workdir):
    """gemini --resume keeps the session id and re-sends the first turn to the model."""
    check_resume("gemini", cli_settings, model_double, workdir)
