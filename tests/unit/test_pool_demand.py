"""The warm pool following demand, with stand-in processes, in virtual time."""

from __future__ import annotations

import anyio
import anyio.lowlevel
from hypothesis import given, settings
from hypothesis import strategies as st

from clinvk.adapters.backends.pool import WarmPool, beside, pool_key
from tests.strategies import pool_arrivals
from tests.virtual_time import AutojumpEventLoop

ARGV, CWD, ENV = ["cli"], "/work", {"PATH": "/bin"}
KEY = pool_key(ARGV, CWD, ENV)


class FakeProcess:
    """A started process: alive until ended."""

    def __init__(self, registry: list[FakeProcess]) -> None:
        self.ended = False
        registry.append(self)

    @property
    def alive(self) -> bool:
        return not self.ended

    async def discard(self) -> None:
        assert not self.ended, "ended twice"
        self.ended = True


def _run(main) -> None:
    anyio.run(main, backend="asyncio", backend_options={"loop_factory": AutojumpEventLoop})


def _pool(started: list[FakeProcess], **kwargs) -> WarmPool:
    async def spawner(argv, cwd, env, label):
        await anyio.sleep(0.01)  # the fork/exec
        return FakeProcess(started)

    return WarmPool(spawner=spawner, **kwargs)


async def _request(pool: WarmPool, first_text: float, duration: float, capacity, cold: list):
    """What the runner does: take or start cold; once it answers, keep the pool filled
    beside it; refill once more at its end."""
    cli = await pool.take(KEY)
    if cli is None:
        cli = FakeProcess(cold)
    answered = anyio.Event()

    async def run() -> None:
        await anyio.sleep(first_text)
        answered.set()
        await anyio.sleep(max(0.0, duration - first_text))

    async def replenish() -> None:
        await answered.wait()
        await pool.keep_filled(KEY, lambda: capacity)

    await beside(run, replenish)
    await cli.discard()  # the run is over: its process ends
    await pool.refill(KEY, capacity=capacity)


@settings(deadline=None, max_examples=60)
@given(
    arrivals=pool_arrivals,
    floor=st.integers(0, 2),
    ceiling=st.integers(0, 4),
    capacity=st.none() | st.integers(1, 6),
)
def test_never_more_processes_than_configured_and_every_one_ended(
    arrivals, floor, ceiling, capacity
):
    """Over any arrival pattern the pool keeps at most max(floor, ceiling) processes
    waiting, never more than the admission capacity beyond its floor, and after shutdown
    every process it started (used or not) has ended."""
    started: list[FakeProcess] = []
    cold: list[FakeProcess] = []
    most = max(floor, ceiling)

    async def main() -> None:
        pool = _pool(started, shrink_secs=30, pace_secs=0.5)
        await pool.add("cli", ARGV, CWD, ENV, floor, ceiling=ceiling)
        async with anyio.create_task_group() as tg:
            for gap, first_text, duration in arrivals:
                await anyio.sleep(gap)
                assert pool.ready() <= most
                tg.start_soon(_request, pool, first_text, duration, capacity, cold)
                await anyio.lowlevel.checkpoint()
                assert pool.ready() <= most
                if capacity is not None:
                    assert pool.ready() <= max(capacity, floor)
        await pool.aclose()
        assert pool.ready() == 0

    _run(main)
    assert all(p.ended for p in started + cold)


def test_back_to_back_requests_find_a_warm_process_from_the_second_on():
    """One client sending requests back to back: the spare started once a run answers is
    ready for the next request, so every request after the first is a hit."""
    started: list[FakeProcess] = []

    async def main() -> None:
        pool = _pool(started, pace_secs=0.5)
        await pool.add("cli", ARGV, CWD, ENV, 0, ceiling=2)
        for _ in range(6):
            await _request(pool, 0.2, 1.5, None, [])
        assert pool.stats.misses == 1 and pool.stats.hits == 5
        await pool.aclose()

    _run(main)


def test_concurrent_clients_grow_the_pool_and_quiet_time_shrinks_it():
    """Four clients at once find the pool empty, so it grows towards its ceiling (paced);
    after a quiet spell it gives the extra processes back, down to its floor."""
    started: list[FakeProcess] = []

    async def main() -> None:
        pool = _pool(started, pace_secs=0.5, shrink_secs=30)
        await pool.add("cli", ARGV, CWD, ENV, 1, ceiling=4)

        async def client() -> None:
            for _ in range(5):
                await _request(pool, 0.2, 1.5, None, [])

        async with anyio.create_task_group() as tg:
            for _ in range(4):
                tg.start_soon(client)
        assert pool.size() == 4
        assert pool.stats.hits > pool.stats.misses
        await anyio.sleep(120)  # four shrink steps; still within idle_secs
        await pool.refill(KEY)
        assert pool.size() == 1 and pool.ready() == 1
        assert pool.stats.shrunk >= 1
        await pool.aclose()

    _run(main)
    assert all(p.ended for p in started)


def test_cpu_idle_reads_idle_cores_between_calls(tmp_path):
    """CpuIdle turns two /proc/stat readings into idle cores (None before it has two)."""
    import os

    from clinvk.adapters.backends.pool import CpuIdle

    stat = tmp_path / "stat"
    stat.write_text("cpu  100 0 100 800 0 0 0 0 0 0\n")
    idle = CpuIdle(min_secs=0.0, path=str(stat))
    assert idle() is None
    stat.write_text("cpu  150 0 150 900 0 0 0 0 0 0\n")  # 100 of 200 jiffies idle
    assert idle() == (os.cpu_count() or 1) * 0.5
    stat.write_text("garbage")
    assert idle() is None


def test_the_pool_keeps_no_more_spares_than_admission_allows():
    """With capacity for one more run only, the pool does not start a second spare."""
    started: list[FakeProcess] = []

    async def main() -> None:
        pool = _pool(started, pace_secs=0)
        await pool.add("cli", ARGV, CWD, ENV, 0, ceiling=4)
        for _ in range(4):
            assert await pool.take(KEY) is None
        for _ in range(4):
            await pool.refill(KEY, capacity=1)
        assert pool.size() == 4 and pool.ready() == 1
        await pool.aclose()

    _run(main)
