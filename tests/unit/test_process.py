"""Process driving: lines as they come, the idle timeout, the whole-run deadline."""

from __future__ import annotations

import os
import uuid

import anyio
import pytest

from clinvk.adapters.backends.process import run_process

pytestmark = pytest.mark.anyio
ENV = {"PATH": os.environ["PATH"]}


def _alive_with(marker: str) -> list[int]:
    """Pids of running processes (zombies excluded) whose environment holds `marker`."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                if marker.encode() not in f.read():
                    continue
            with open(f"/proc/{entry}/stat", "rb") as f:
                if f.read().rsplit(b")", 1)[1].split()[0] != b"Z":
                    pids.append(int(entry))
        except OSError:
            continue
    return pids


async def _run(script: str, *, timeout=None, idle=None):
    """Run `script` under sh; its processes carry a marker so the test can look for them."""
    lines: list[bytes] = []
    marker = f"CLINVK_PROCESS_TEST={uuid.uuid4().hex}"

    async def on_line(line: bytes) -> None:
        lines.append(line)

    env = {**ENV, marker.split("=")[0]: marker.split("=")[1]}
    with anyio.fail_after(60):  # guards against a hang only: the scripts would run an hour
        outcome = await run_process(
            ["sh", "-c", script], cwd="/tmp", env=env, stdin=None, on_line=on_line,
            timeout=timeout, idle_timeout=idle,
        )
    return outcome, lines, marker


async def _none_left(marker: str) -> list[int]:
    """Wait (up to a generous 30 s) for every marked process to be gone; return the rest."""
    with anyio.move_on_after(30):
        while _alive_with(marker):
            await anyio.sleep(0.05)
    return _alive_with(marker)


async def test_idle_timeout_ends_a_silent_cli():
    """A CLI that prints nothing for the idle timeout is terminated and reported as idle."""
    outcome, lines, marker = await _run("echo first; sleep 3600; echo never", idle=1.0)
    assert outcome.timed_out == "idle"
    assert lines == [b"first"]
    assert await _none_left(marker) == []


async def test_output_keeps_an_idle_timeout_from_firing():
    """Steady output resets the idle timeout, so a run longer than it (6 x 0.25 s against
    1 s) completes."""
    outcome, lines, _ = await _run("for i in 1 2 3 4 5 6; do echo $i; sleep 0.25; done", idle=1.0)
    assert outcome.timed_out is None and outcome.exit_code == 0
    assert lines == [b"1", b"2", b"3", b"4", b"5", b"6"]


async def test_deadline_ends_the_whole_group():
    """At the deadline the whole process group (children included) is terminated."""
    outcome, _, marker = await _run("sleep 3600 & sleep 3600; wait", timeout=1.0)
    assert outcome.timed_out == "deadline"
    assert await _none_left(marker) == []


async def test_stderr_tail_is_kept_and_bounded():
    """stderr is read alongside stdout and only its tail is kept."""
    outcome, _, _ = await _run("head -c 100000 /dev/zero | tr '\\\\0' x >&2; echo done >&2")
    assert outcome.stderr.endswith("done\n")
    assert len(outcome.stderr) <= 16 * 1024 + 1024
    await anyio.sleep(0)
