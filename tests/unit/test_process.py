"""Process driving: lines as they come, the idle timeout, the whole-run deadline."""

from __future__ import annotations

import os
import time

import anyio
import pytest

from clinvk.adapters.backends.process import run_process

pytestmark = pytest.mark.anyio
ENV = {"PATH": os.environ["PATH"]}


async def _run(script: str, *, timeout=None, idle=None):
    lines: list[bytes] = []

    async def on_line(line: bytes) -> None:
        lines.append(line)

    started = time.monotonic()
    outcome = await run_process(
        ["sh", "-c", script], cwd="/tmp", env=ENV, stdin=None, on_line=on_line,
        timeout=timeout, idle_timeout=idle,
    )
    return outcome, lines, time.monotonic() - started


async def test_idle_timeout_ends_a_silent_cli():
    """A CLI that prints nothing for the idle timeout is terminated and reported as idle."""
    outcome, lines, elapsed = await _run("echo first; sleep 30; echo never", idle=0.3)
    assert outcome.timed_out == "idle"
    assert lines == [b"first"]
    assert elapsed < 5


async def test_output_keeps_an_idle_timeout_from_firing():
    """Steady output resets the idle timeout, so a long but chatty run completes."""
    outcome, lines, _ = await _run("for i in 1 2 3 4 5 6; do echo $i; sleep 0.1; done", idle=0.3)
    assert outcome.timed_out is None and outcome.exit_code == 0
    assert lines == [b"1", b"2", b"3", b"4", b"5", b"6"]


async def test_deadline_ends_the_whole_group():
    """At the deadline the whole process group (children included) is terminated."""
    outcome, _, elapsed = await _run("sleep 30 & sleep 30; wait", timeout=0.3)
    assert outcome.timed_out == "deadline"
    assert elapsed < 5


async def test_stderr_tail_is_kept_and_bounded():
    """stderr is read alongside stdout and only its tail is kept."""
    outcome, _, _ = await _run("head -c 100000 /dev/zero | tr '\\\\0' x >&2; echo done >&2")
    assert outcome.stderr.endswith("done\n")
    assert len(outcome.stderr) <= 16 * 1024 + 1024
    await anyio.sleep(0)
