"""Hot sessions: a process kept for its session's next turn, bounded and always ended."""

from __future__ import annotations

import os
import sys

import anyio
import pytest
from hypothesis import given, settings

from clinvk.adapters.backends.hot import HotProcess, HotSessions
from clinvk.adapters.backends.process import ProcessGroups, spawn
from tests.strategies import hot_session_ops
from tests.virtual_time import AutojumpEventLoop

ENV = {"PATH": os.environ["PATH"]}
SIG = ("claude", "-p", "--input-format", "stream-json")

#: A stand-in CLI that takes turns on stdin: it remembers every line it was given, answers
#: each with what it remembers and its pid, then prints END (its "result" line).
TURNS = r"""
import os, sys
seen = []
for line in sys.stdin:
    if line.strip() == "EXIT":
        print("bye", flush=True)
        break
    if line.strip() == "HANG":
        import time; time.sleep(3600)
    seen.append(line.strip())
    print(f"{os.getpid()} {' '.join(seen)}", flush=True)
    print("END", flush=True)
"""


class FakeHot:
    """A hot process stand-in: alive until ended."""

    def __init__(self, signature: tuple = SIG) -> None:
        self.signature = signature
        self.ended = False

    @property
    def alive(self) -> bool:
        return not self.ended

    async def end(self) -> None:
        self.ended = True


def _run(main) -> None:
    anyio.run(main, backend="asyncio", backend_options={"loop_factory": AutojumpEventLoop})


@settings(deadline=None, max_examples=80)
@given(ops=hot_session_ops)
def test_never_more_hot_sessions_than_allowed_and_every_process_ended(ops):
    """Over any sequence of turns, failures, deletes and idle time: at most `max_hot`
    processes wait, each only for its own session, and every one is ended by the end."""
    made: list[FakeHot] = []

    async def main() -> None:
        hot = HotSessions(max_hot=2, idle_secs=120)
        for what, session, gap in ops:
            await anyio.sleep(gap)
            if what == "tick":
                await hot.maintain()
            elif what == "delete":
                await hot.end(session)
            else:
                token = hot.begin(session)
                process = await hot.take(session, SIG)
                if process is None:
                    process = FakeHot()
                    made.append(process)
                if what == "fail":
                    await process.end()  # what the runner does after a failed turn
                else:
                    await hot.park(session, token, process)
            assert hot.count() <= 2
            assert all(not p.ended for p in hot._hot.values())
            assert len({id(p) for p in hot._hot.values()}) == hot.count()
        await hot.aclose()
        assert hot.count() == 0

    _run(main)
    assert all(p.ended for p in made)


def test_a_process_is_kept_only_for_its_own_session_and_invocation():
    """A waiting process is handed only to its own session, only when the turn's options
    match; otherwise it is ended and the turn runs cold."""

    async def main() -> None:
        hot = HotSessions(max_hot=4, idle_secs=120)
        first = FakeHot()
        await hot.park("a", hot.begin("a"), first)
        assert await hot.take("b", SIG) is None
        assert await hot.take("a", (*SIG, "--model", "other")) is None
        assert first.ended  # options changed: the old process goes
        second = FakeHot()
        await hot.park("a", hot.begin("a"), second)
        assert await hot.take("a", SIG) is second
        assert hot.hits == 1

    _run(main)


def test_a_turn_that_ran_beside_a_newer_one_is_not_parked():
    """Two turns of one session at once: only the process of the newer turn may wait."""

    async def main() -> None:
        hot = HotSessions(max_hot=4, idle_secs=120)
        older, newer = FakeHot(), FakeHot()
        old_token = hot.begin("a")
        new_token = hot.begin("a")
        await hot.park("a", new_token, newer)
        await hot.park("a", old_token, older)
        assert older.ended and not newer.ended
        assert await hot.take("a", SIG) is newer

    _run(main)


def test_idle_and_least_recently_used_processes_are_ended():
    """A process idle longer than idle_secs, and the least recently used beyond max_hot,
    are ended."""

    async def main() -> None:
        hot = HotSessions(max_hot=2, idle_secs=100)
        a, b, c = FakeHot(), FakeHot(), FakeHot()
        await hot.park("a", 0, a)
        await anyio.sleep(1)
        await hot.park("b", 0, b)
        await anyio.sleep(1)
        await hot.park("c", 0, c)
        assert a.ended and not b.ended and not c.ended
        await anyio.sleep(150)
        await hot.maintain()
        assert b.ended and c.ended and hot.count() == 0

    _run(main)


@pytest.mark.anyio
async def test_a_hot_process_answers_several_turns_and_keeps_their_context(tmp_path):
    """The same process answers turn after turn on its open stdin, remembering the earlier
    ones; ending it leaves nothing running."""
    groups = ProcessGroups()
    cli = await spawn(
        [sys.executable, "-c", TURNS], cwd=str(tmp_path), env=ENV, stdin=True, label="t"
    )
    hot = HotProcess(cli, SIG, groups)
    answers: list[bytes] = []
    done = {"flag": False}

    async def on_line(line: bytes) -> None:
        if line == b"END":
            done["flag"] = True
        else:
            answers.append(line)

    for word in (b"one", b"two"):
        done["flag"] = False
        outcome, alive = await hot.turn(
            word + b"\n", on_line=on_line, on_stderr_line=None,
            done=lambda: done["flag"], timeout=60, idle_timeout=None,
        )
        assert alive and outcome.exit_code == 0 and outcome.timed_out is None
    pid = int(answers[0].split()[0])
    assert answers == [f"{pid} one".encode(), f"{pid} one two".encode()]  # one process
    assert groups.count() == 1
    await hot.end()
    assert groups.count() == 0
    for gone in (pid, cli.process.pid):
        with pytest.raises(ProcessLookupError):
            os.kill(gone, 0)


@pytest.mark.anyio
async def test_a_turn_that_ends_the_process_or_times_out_is_not_kept(tmp_path):
    """A process that exits during its turn, or misses its deadline, is never kept."""
    cli = await spawn(
        [sys.executable, "-c", TURNS], cwd=str(tmp_path), env=ENV, stdin=True, label="t"
    )
    hot = HotProcess(cli, SIG, None)
    lines: list[bytes] = []

    async def on_line(line: bytes) -> None:
        lines.append(line)

    outcome, alive = await hot.turn(
        b"EXIT\n", on_line=on_line, on_stderr_line=None, done=lambda: False, timeout=60,
        idle_timeout=None,
    )
    assert not alive and lines == [b"bye"] and outcome.exit_code == 0
    cli = await spawn(
        [sys.executable, "-c", TURNS], cwd=str(tmp_path), env=ENV, stdin=True, label="t"
    )
    hot = HotProcess(cli, SIG, None)
    outcome, alive = await hot.turn(
        b"HANG\n", on_line=on_line, on_stderr_line=None, done=lambda: False, timeout=0.5,
        idle_timeout=None,
    )
    assert not alive and outcome.timed_out == "deadline"
    with pytest.raises(ProcessLookupError):
        os.kill(cli.process.pid, 0)
