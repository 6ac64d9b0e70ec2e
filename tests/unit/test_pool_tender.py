"""The pool's own timer (PoolTender): fills, shrinks and ends on time between requests,
never while a run is live; in virtual time with stand-in processes."""

from __future__ import annotations

import contextvars
import itertools
from typing import Self

import anyio
import anyio.lowlevel
from hypothesis import given, settings
from hypothesis import strategies as st

from clinvk.adapters.backends.hot import HotSessions
from clinvk.adapters.backends.pool import WarmPool, beside, pool_key
from clinvk.adapters.backends.pool_tender import PoolTender
from tests.strategies import pool_arrivals
from tests.virtual_time import AutojumpEventLoop

ARGV, CWD, ENV = ["cli"], "/work", {"PATH": "/bin"}
KEY = pool_key(ARGV, CWD, ENV)
SIG = ("cli", "--turns")
#: Set in the tender's task only: tells its starts from those beside a live run.
IN_TENDER = contextvars.ContextVar("in_tender", default=False)


class FakeProcess:
    """A started process: alive until ended; remembers how many runs were live at its start."""

    def __init__(self, registry: list[FakeProcess], live: int = 0, born: float = 0.0) -> None:
        self.ended = False
        self.live_at_start = live
        self.by_tender = IN_TENDER.get()
        self.born = born
        self.signature = SIG
        registry.append(self)

    @property
    def alive(self) -> bool:
        return not self.ended

    async def discard(self) -> None:
        assert not self.ended, "ended twice"
        self.ended = True

    end = discard


def _run(main) -> None:
    anyio.run(main, backend="asyncio", backend_options={"loop_factory": AutojumpEventLoop})


class Rig:
    """A pool, hot sessions and their tender over stand-in processes."""

    def __init__(self, *, floor: int = 1, ceiling: int = 3, capacity=None, max_hot: int = 2,
                 **pool_kwargs) -> None:
        self.started: list[FakeProcess] = []
        self.cold: list[FakeProcess] = []
        self.floor, self.ceiling, self.capacity = floor, ceiling, capacity
        self.pool_kwargs = {"shrink_secs": 30, "pace_secs": 0.5, **pool_kwargs}
        self.max_hot = max_hot

    async def __aenter__(self) -> Self:
        async def spawner(argv, cwd, env, label):
            await anyio.sleep(0.01)  # the fork/exec
            return FakeProcess(self.started, self.tender.live, anyio.current_time())

        self.pool = WarmPool(spawner=spawner, **self.pool_kwargs)
        self.hot = HotSessions(max_hot=self.max_hot, idle_secs=120)
        self.tender = PoolTender(self.pool, self.hot, capacity=lambda backend: self.capacity)
        await self.pool.add("cli", ARGV, CWD, ENV, self.floor, ceiling=self.ceiling)
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        self._tg.start_soon(self._tend)
        return self

    async def _tend(self) -> None:
        IN_TENDER.set(True)
        await self.tender.tend()

    async def __aexit__(self, *exc) -> None:
        await self.tender.stop()  # what the server's shutdown does, then close_pool
        await self._tg.__aexit__(None, None, None)
        await self.hot.aclose()
        await self.pool.aclose()

    async def request(self, first_text: float, duration: float, session: str | None = None):
        """What the runner does for one run (see test_pool_demand), marked live."""
        with self.tender.running():
            cli = await self.pool.take(KEY)
            if cli is None:
                cli = FakeProcess(self.cold)
            answered = anyio.Event()

            async def run() -> None:
                await anyio.sleep(first_text)
                answered.set()
                await anyio.sleep(max(0.0, duration - first_text))

            async def replenish() -> None:
                await answered.wait()
                await self.pool.keep_filled(KEY, lambda: self.capacity)

            await beside(run, replenish)
            if session is None:
                await cli.discard()
            else:
                await self.hot.park(session, self.hot.begin(session), cli)
            await self.pool.refill(KEY, capacity=self.capacity)


def test_after_a_burst_the_spares_grow_to_the_target_once_no_run_is_live():
    """Three requests at once grow the target to three; the spares beyond the floor start
    after the runs ended (none while one was live), paced, until three wait."""

    async def main() -> None:
        async with Rig(floor=1, ceiling=3) as rig:
            async with anyio.create_task_group() as tg:
                for _ in range(3):
                    tg.start_soon(rig.request, 0.0, 0.05)  # ends before any spare could
            assert rig.pool.size() == 3
            await anyio.sleep(5)
            assert rig.pool.ready() == 3
            assert any(p.by_tender for p in rig.started), "the timer started the spares"
            starts = sorted(p.born for p in rig.started[1:])
            assert all(b - a >= 0.5 for a, b in itertools.pairwise(starts))

    _run(main)


def test_a_quiet_pool_shrinks_back_to_its_floor_without_requests():
    """With no request at all, a grown pool gives back one process per shrink_secs, down
    to its floor, ending the surplus ones."""

    async def main() -> None:
        async with Rig(floor=1, ceiling=3) as rig:
            async with anyio.create_task_group() as tg:
                for _ in range(3):
                    tg.start_soon(rig.request, 0.0, 0.05)
            await anyio.sleep(5)
            assert rig.pool.ready() == 3
            await anyio.sleep(200)  # several shrink steps, still within idle_secs
            assert rig.pool.size() == 1 and rig.pool.ready() == 1
            assert sum(not p.ended for p in rig.started) == 1  # surplus ended, the used one too

    _run(main)


def test_a_process_past_its_idle_time_is_replaced_without_a_request():
    """A waiting process older than idle_secs is ended and a fresh one started, by the
    timer alone."""

    async def main() -> None:
        async with Rig(floor=1, ceiling=1, idle_secs=300) as rig:
            first = rig.started[0]
            await anyio.sleep(301)
            assert first.ended
            assert rig.pool.ready() == 1 and not rig.started[-1].ended

    _run(main)


def test_hot_sessions_past_their_idle_time_end_without_a_request():
    """A hot session's process that waited longer than hot_session_idle_secs is ended by
    the timer, with no request to notice it."""

    async def main() -> None:
        async with Rig(floor=0, ceiling=0) as rig:
            await rig.request(0.0, 0.05, session="s1")
            assert rig.hot.count() == 1
            await anyio.sleep(121)
            assert rig.hot.count() == 0 and all(p.ended for p in rig.cold)

    _run(main)


def test_the_tender_starts_nothing_while_a_run_is_live():
    """While a long run is live (before it answers), the timer starts no spare even though
    the pool is below its floor; once the run ends, it refills."""

    async def main() -> None:
        async with Rig(floor=1, ceiling=1) as rig:
            async with anyio.create_task_group() as tg:
                tg.start_soon(rig.request, 100.0, 100.0)  # takes the only spare
                await anyio.sleep(50)
                assert rig.pool.ready() == 0 and len(rig.started) == 1
            await anyio.sleep(1)
            assert rig.pool.ready() == 1

    _run(main)


@settings(deadline=None, max_examples=50)
@given(
    arrivals=pool_arrivals,
    floor=st.integers(0, 2),
    ceiling=st.integers(0, 4),
    capacity=st.none() | st.integers(1, 6),
    hot_every=st.integers(0, 3),
)
def test_with_the_timer_never_more_processes_than_configured_and_every_one_ended(
    arrivals, floor, ceiling, capacity, hot_every
):
    """Over any arrival pattern, with the timer running: at most max(floor, ceiling) wait
    in the pool (no more than the admission capacity beyond the floor), at most max_hot in
    hot sessions, the timer starts nothing while a run is live, a quiet spell fills the pool
    to its target, and after shutdown every process is ended."""
    most = max(floor, ceiling)

    async def main() -> None:
        async with Rig(floor=floor, ceiling=ceiling, capacity=capacity) as rig:

            def check() -> None:
                assert rig.pool.ready() <= most
                if capacity is not None:
                    assert rig.pool.ready() <= max(capacity, floor)
                assert rig.hot.count() <= rig.max_hot

            async with anyio.create_task_group() as tg:
                for index, (gap, first_text, duration) in enumerate(arrivals):
                    await anyio.sleep(gap)
                    check()
                    session = f"s{index % 3}" if hot_every and index % hot_every == 0 else None
                    tg.start_soon(rig.request, first_text, duration, session)
                    await anyio.lowlevel.checkpoint()
                    check()
            await anyio.sleep(10)  # quiet: the timer fills up to the target
            check()
            want = rig.pool.size() if capacity is None else min(rig.pool.size(), capacity)
            assert rig.pool.ready() == want
        assert rig.pool.ready() == 0 and rig.hot.count() == 0
        assert all(p.live_at_start == 0 for p in rig.started if p.by_tender)
        assert all(p.ended for p in rig.started + rig.cold)

    _run(main)


def test_stopping_the_timer_waits_for_a_start_under_way_and_leaves_nothing_behind():
    """Stopping the timer while it is starting a process lets that start finish (into the
    pool, which then ends it at close), so no started process is left outside the pool."""

    async def main() -> None:
        started: list[FakeProcess] = []
        spawning = anyio.Event()

        async def slow_spawner(argv, cwd, env, label):
            spawning.set()
            await anyio.sleep(5)  # the fork/exec, slowed down
            return FakeProcess(started)

        pool = WarmPool(spawner=slow_spawner, pace_secs=0.5)
        await pool.add("cli", ARGV, CWD, ENV, 0, ceiling=1)
        await pool.take(KEY)  # a miss: the target grows to 1
        tender = PoolTender(pool, HotSessions(max_hot=0, idle_secs=1))
        async with anyio.create_task_group() as tg:
            tg.start_soon(tender.tend)
            await spawning.wait()
            await tender.stop()
            assert len(started) == 1 and pool.ready() == 1  # the start finished first
        await pool.aclose()
        assert all(p.ended for p in started)

    _run(main)


def test_a_cli_that_cannot_start_is_tried_again_only_after_a_pause():
    """When a start fails (the CLI is gone), the timer does not retry it at every look but
    waits FAILED_START_SECS, then tries again."""
    from clinvk.adapters.backends.pool import FAILED_START_SECS

    async def main() -> None:
        attempts: list[float] = []

        async def broken(argv, cwd, env, label):
            attempts.append(anyio.current_time())
            raise FileNotFoundError(argv[0])

        pool = WarmPool(spawner=broken, pace_secs=0.5)
        await pool.add("cli", ARGV, CWD, ENV, 1, ceiling=1)
        tender = PoolTender(pool, HotSessions(max_hot=0, idle_secs=1))
        async with anyio.create_task_group() as tg:
            tg.start_soon(tender.tend)
            await anyio.sleep(FAILED_START_SECS * 2.5)
            await tender.stop()
        gaps = [b - a for a, b in itertools.pairwise(attempts)]
        assert 2 <= len(attempts) <= 4 and all(g >= FAILED_START_SECS for g in gaps)
        await pool.aclose()

    _run(main)
