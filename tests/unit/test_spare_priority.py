"""A warm pool's spare starts at low CPU priority and is raised back when a run takes it."""

from __future__ import annotations

import errno
import os
import shutil

import anyio
import pytest

from clinvk.adapters.backends import priority
from clinvk.adapters.backends.hot import HotSessions
from clinvk.adapters.backends.pool import WarmPool, pool_key, spare_priority
from clinvk.adapters.backends.pool_tender import PoolTender
from clinvk.adapters.backends.process import spawn

pytestmark = pytest.mark.anyio
ARGV, CWD, ENV = ["cli"], "/work", {"PATH": "/bin"}
KEY = pool_key(ARGV, CWD, ENV)
#: A CLI stand-in with a few threads, waiting for its prompt on stdin.
THREADED = [
    "python3", "-c",
    (
        "import sys, threading; e = threading.Event()\n"
        "for _ in range(3): threading.Thread(target=e.wait, daemon=True).start()\n"
        "print('up', flush=True); sys.stdin.read()"
    ),
]
needs_renice = pytest.mark.skipif(
    not priority.can_renice() or not shutil.which("python3"),
    reason="raising a thread's priority back needs CAP_SYS_NICE or RLIMIT_NICE",
)


@pytest.mark.parametrize(
    ("requested", "can_renice", "autogroup", "mode"),
    [
        ("normal", True, True, "normal"),
        ("low", True, True, "idle"),
        ("low", True, False, "idle"),
        ("low", False, True, "autogroup"),
        ("low", False, False, "normal"),
    ],
)
def test_spares_start_only_as_low_as_can_be_undone(requested, can_renice, autogroup, mode):
    """Low is SCHED_IDLE plus autogroup where the server may raise threads back, the
    autogroup alone where it may not, and normal where neither can be undone."""
    assert priority.choose(requested, can_renice=can_renice, autogroup=autogroup) == mode


def test_normal_spares_have_no_promoter():
    """Spares at normal priority are spawned as before and never promoted."""
    spawner, promote = spare_priority("normal")
    assert promote is None
    assert WarmPool(spawner=spawner, promote=promote).spares_low is False


class FakeProcess:
    """A started spare: alive until ended; remembers its priority."""

    def __init__(self, log: list[tuple[str, int]], number: int) -> None:
        self.number = number
        self.low = True
        self.ended = False
        self._log = log

    @property
    def alive(self) -> bool:
        return not self.ended

    async def discard(self) -> None:
        self.ended = True


def _low_pool(log: list[tuple[str, int]], *, raises: bool = True, **kwargs) -> WarmPool:
    started: list[FakeProcess] = []

    async def spawner(argv, cwd, env, label):
        cli = FakeProcess(log, len(started))
        started.append(cli)
        log.append(("spawned low", cli.number))
        return cli

    async def promote(cli: FakeProcess) -> bool:
        log.append(("promoted", cli.number))
        cli.low = not raises
        return raises

    return WarmPool(spawner=spawner, promote=promote, pace_secs=0, **kwargs)


async def test_a_taken_spare_is_the_oldest_and_raised_before_it_is_handed_out():
    """take() promotes exactly the spare it hands out, the oldest one, before returning it."""
    log: list[tuple[str, int]] = []
    pool = _low_pool(log)
    await pool.add("cli", ARGV, CWD, ENV, 2)
    cli = await pool.take(KEY)
    assert isinstance(cli, FakeProcess)
    assert (cli.number, cli.low) == (0, False)
    assert log == [("spawned low", 0), ("spawned low", 1), ("promoted", 0)]
    assert pool.stats.promoted == 1 and pool.stats.promote_failed == 0
    remaining = pool._slots[KEY].ready[0].cli
    assert remaining.low is True  # still waiting: still low
    await pool.aclose()


async def test_a_spare_that_cannot_be_raised_is_still_handed_out_and_counted():
    """A failed promotion does not cost the request its warm process; it is counted."""
    log: list[tuple[str, int]] = []
    pool = _low_pool(log, raises=False)
    await pool.add("cli", ARGV, CWD, ENV, 1)
    cli = await pool.take(KEY)
    assert cli is not None and pool.stats.promote_failed == 1
    await pool.aclose()


@pytest.mark.parametrize("low", [False, True])
async def test_low_spares_start_beside_a_starting_run_and_normal_ones_wait(low):
    """A normal-priority spare is not started while a run waits for its first text; a low
    one is (it yields the CPU)."""
    log: list[tuple[str, int]] = []
    calm = [False]
    if low:
        pool = _low_pool(log, calm=lambda: calm[0])
    else:
        async def spawner(argv, cwd, env, label):
            return FakeProcess(log, 0)

        pool = WarmPool(spawner=spawner, pace_secs=0, calm=lambda: calm[0])
    await pool.add("cli", ARGV, CWD, ENV, 1)
    assert await pool.take(KEY) is not None
    before = pool.stats.started
    await pool.refill(KEY)
    assert pool.stats.started == before + (1 if low else 0)
    calm[0] = True
    await pool.refill(KEY)
    assert pool.ready() == 1
    await pool.aclose()


def test_the_tender_is_calm_once_every_live_run_has_answered():
    """A run is in its start from when it begins until it answers (or ends)."""
    tender = PoolTender(WarmPool(), HotSessions(max_hot=0, idle_secs=1))
    assert tender.calm
    with tender.running() as first:
        assert not tender.calm
        with tender.running() as second:
            first()
            first()  # once only
            assert not tender.calm and tender.live == 2
            second()
            assert tender.calm
        with tender.running():
            assert not tender.calm
        assert tender.calm and tender.live == 1
    assert tender.calm and tender.live == 0


def _threads(pid: int) -> list[tuple[int, int]]:
    """(scheduling policy, nice) of each thread of `pid`."""
    out = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        out.append((os.sched_getscheduler(int(tid)), os.getpriority(os.PRIO_PROCESS, int(tid))))
    return out


def _autogroup_nice(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/autogroup") as f:
            return int(f.read().split()[-1])
    except OSError:
        return None


async def _up(cli) -> None:
    """Wait until the stand-in printed `up` (its threads are started)."""
    with anyio.fail_after(60):  # a hang guard only: a SCHED_IDLE start may be slow when busy
        while True:
            try:
                if os.read(cli.out_read, 64):
                    return
            except BlockingIOError:
                await anyio.wait_readable(cli.out_read)


@needs_renice
async def test_a_real_spare_starts_idle_in_every_thread_and_is_raised_back(tmp_path):
    """With the rights to undo it, the CLI and all its threads start SCHED_IDLE at nice 19
    in an autogroup at nice 19, and `restore` puts all of it back to the server's."""
    spawner, promote = spare_priority("idle")
    assert promote is not None
    cli = await spawner(THREADED, str(tmp_path), {"PATH": os.environ["PATH"]}, "test")
    try:
        await _up(cli)
        threads = _threads(cli.cli_pid)
        assert len(threads) >= 4
        assert set(threads) == {(os.SCHED_IDLE, 19)}
        if priority.autogroup_enabled():
            assert _autogroup_nice(cli.process.pid) == 19
        assert await promote(cli) is True
        mine = (os.sched_getscheduler(0), os.getpriority(os.PRIO_PROCESS, 0))
        assert set(_threads(cli.cli_pid)) == {mine}
        assert set(_threads(cli.process.pid)) == {mine}
        if priority.autogroup_enabled():
            assert _autogroup_nice(cli.process.pid) == 0
    finally:
        await cli.discard()


@pytest.mark.skipif(not priority.autogroup_enabled(), reason="no sched autogroup")
async def test_without_renice_rights_only_the_autogroup_is_lowered(tmp_path):
    """The `autogroup` mode leaves every thread's own priority alone (it could not be
    raised back without the rights) and lowers the session's autogroup only."""
    cli = await spawn(THREADED, cwd=str(tmp_path), env={"PATH": os.environ["PATH"]},
                      stdin=True, priority="autogroup")
    try:
        await _up(cli)
        mine = (os.sched_getscheduler(0), os.getpriority(os.PRIO_PROCESS, 0))
        assert set(_threads(cli.cli_pid)) == {mine}
        assert _autogroup_nice(cli.process.pid) == 19
        assert priority.restore(cli.process.pid, "autogroup") is True
        assert _autogroup_nice(cli.process.pid) == 0
    finally:
        await cli.discard()


def test_restoring_a_spare_that_is_gone_is_not_an_error():
    """A spare that died before it was raised leaves nothing to do."""
    with open("/proc/sys/kernel/pid_max") as f:
        never = int(f.read()) + 1  # no process can have it (a real pid could be reused)
    assert priority.restore(never, "idle") is True
    assert priority.restore(never, "normal") is True


async def test_a_spare_still_starting_is_handed_out_last_and_grows_the_pool():
    """take() prefers the oldest spare done starting; when every spare is still busy it
    hands out the oldest anyway (sooner than cold) and counts a miss, so the pool grows."""
    log: list[tuple[str, int]] = []
    pool = _low_pool(log)
    busy: set[int] = set()
    pool._starting = lambda cli: cli.number in busy
    await pool.add("cli", ARGV, CWD, ENV, 2, ceiling=3)
    busy.add(0)
    cli = await pool.take(KEY)
    assert cli is not None and cli.number == 1
    assert pool.size() == 2 and pool.stats.busy == 0
    await pool.refill(KEY)
    busy.update({0, 2})
    cli = await pool.take(KEY)
    assert cli is not None and cli.number == 0
    assert pool.size() == 3 and pool.stats.busy == 1 and pool.stats.hits == 2
    await pool.aclose()


async def test_a_real_process_is_starting_while_it_computes_and_not_once_it_waits(tmp_path):
    """A process burning CPU is still starting; one blocked reading its stdin is not."""
    env = {"PATH": os.environ["PATH"]}
    spinning = await spawn(["python3", "-c", "while True: pass"], cwd=str(tmp_path), env=env,
                           stdin=True)
    waiting = await spawn(THREADED, cwd=str(tmp_path), env=env, stdin=True)
    try:
        assert priority.starting(spinning.process.pid)
        await _up(waiting)
        with anyio.fail_after(60):  # a hang guard: `up` is printed just before it blocks
            while priority.starting(waiting.process.pid):
                await anyio.sleep(0.01)
        assert priority.starting(spinning.process.pid)
    finally:
        await spinning.discard()
        await waiting.discard()


def test_a_rate_limited_autogroup_raise_is_retried_without_holding_the_run(monkeypatch):
    """When the kernel refuses an autogroup change (EAGAIN: at most one per 0.1 s without
    CAP_SYS_ADMIN), restore returns at once and the raise is retried beside the run."""
    writes: list[tuple[str, int, int]] = []
    refusals = [2]

    def write(pid: int, nice: int) -> None:
        if refusals[0]:
            refusals[0] -= 1
            writes.append(("refused", pid, nice))
            raise OSError(errno.EAGAIN, "again")
        writes.append(("written", pid, nice))

    class Inline:
        """A thread that runs when started (so the test sees the order, not a schedule)."""

        def __init__(self, target, args, daemon):
            self._run = lambda: target(*args)

        def start(self) -> None:
            writes.append(("retrying", 0, 0))
            self._run()

    monkeypatch.setattr(priority, "_write_autogroup", write)
    monkeypatch.setattr(priority.threading, "Thread", Inline)
    monkeypatch.setattr(priority, "AUTOGROUP_RATE_SECS", 0)
    assert priority.restore(12345, "autogroup") is True
    assert writes == [
        ("refused", 12345, 0), ("retrying", 0, 0), ("refused", 12345, 0), ("written", 12345, 0),
    ]


async def test_a_spare_seen_done_starting_stays_done_through_a_busy_blip():
    """Once a spare was seen asleep, a later busy look (a timer firing) does not make the
    pool count it as still starting."""
    log: list[tuple[str, int]] = []
    pool = _low_pool(log)
    busy: set[int] = set()
    pool._starting = lambda cli: cli.number in busy
    await pool.add("cli", ARGV, CWD, ENV, 1, ceiling=3)
    await pool.refill(KEY)  # looks at the waiting spare: asleep
    busy.add(0)
    cli = await pool.take(KEY)
    assert cli is not None and cli.number == 0
    assert pool.size() == 1 and pool.stats.busy == 0
    await pool.aclose()
