"""A warm pool: CLI processes started ahead of time that read their prompt later.

A cold `claude -p` spends ~0.45 s starting before the model is even asked; a process
started in advance with `--input-format stream-json` answers ~0.06 s after the prompt is
written. Each pooled process serves exactly one request and is then gone (its replacement
is started fresh), so no conversation context ever carries from one request to the next.

How many processes each invocation keeps ready follows demand (see `pool_policy`): the
configured `warm_pool` is the floor, misses grow it up to `warm_pool_max`, quiet time
shrinks it back.

Spares start at low CPU priority where it can be undone (see `priority`): they take only
the CPU live runs leave idle, and a run that takes one raises it back first. Spares at
normal priority are started only while no run is waiting for its first text.
"""

from __future__ import annotations

import math
import os
import time
from collections import deque
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, TypeVar

import anyio
import msgspec

from clinvk.adapters.backends import priority
from clinvk.adapters.backends.pool_policy import PoolLimits, PoolPolicy
from clinvk.adapters.backends.process import CliProcess, spawn

PoolKey = tuple
#: How long the pool's timer leaves a signature alone after a process failed to start.
FAILED_START_SECS = 30.0
T = TypeVar("T")

#: Starts one waiting process: (argv, cwd, env, label) -> a process whose stdin is a pipe.
Spawner = Callable[[list[str], str, dict[str, str], str], Awaitable[CliProcess]]
#: Raises a spare that started low back to normal priority; False if it could not be.
Promoter = Callable[[Any], Awaitable[bool]]


async def _spawn_waiting(
    argv: list[str], cwd: str, env: dict[str, str], label: str, *, mode: str = "normal"
) -> CliProcess:
    return await spawn(argv, cwd=cwd, env=env, stdin=True, label=label, priority=mode)


def spare_priority(mode: priority.Mode) -> tuple[Spawner, Promoter | None]:
    """The spawner and promoter of spares that start in `mode` (see `priority.choose`)."""
    if mode == "normal":
        return _spawn_waiting, None

    async def promote(cli: CliProcess) -> bool:
        return await anyio.to_thread.run_sync(priority.restore, cli.process.pid, mode)

    return partial(_spawn_waiting, mode=mode), promote


class _Warm(msgspec.Struct):
    cli: CliProcess
    born: float
    #: Seen done starting once (a start-up does not resume; a later busy look is a blip:
    #: a timer, a collection).
    settled: bool = False


class _Slot:
    """One pooled signature: how to start it, its policy and the processes ready for it."""

    def __init__(
        self, argv: list[str], cwd: str, env: dict[str, str], backend: str, limits: PoolLimits,
        now: float,
    ) -> None:
        self.argv, self.cwd, self.env, self.backend = argv, cwd, env, backend
        self.policy = PoolPolicy(limits)
        self.ready: deque[_Warm] = deque()
        self.starting = 0
        self.last_used = now
        #: Until when the timer does not try again after a start failed (e.g. the CLI is gone).
        self.failed_until = -math.inf

    @property
    def live(self) -> int:
        return len(self.ready) + self.starting


class PoolStats(msgspec.Struct):
    hits: int = 0
    misses: int = 0
    started: int = 0
    expired: int = 0
    died: int = 0
    shrunk: int = 0
    #: Spares handed out while still starting (they count as misses for growth).
    busy: int = 0
    #: Spares raised back to normal priority when handed out / that could not be.
    promoted: int = 0
    promote_failed: int = 0


def pool_key(argv: list[str], cwd: str, env: dict[str, str]) -> PoolKey:
    """What a request must match exactly to use a pooled process."""
    return (tuple(argv), cwd, tuple(sorted(env.items())))


class WarmPool:
    """Sets of ready processes, one set per pooled signature, each sized by its policy."""

    def __init__(
        self, *, idle_secs: float = 300, shrink_secs: float = 60, pace_secs: float = 0.5,
        spawner: Spawner = _spawn_waiting, clock: Callable[[], float] = anyio.current_time,
        idle: Callable[[], float | None] = lambda: None, min_idle_cores: float = 1.0,
        promote: Promoter | None = None, calm: Callable[[], bool] = lambda: True,
        starting: Callable[[Any], bool] = lambda cli: False,
    ) -> None:
        """`idle`: the machine's idle cores just now (see `CpuIdle`); None = not known, and
        starts are not held back by load. `promote`: raises a spare the `spawner` started
        low back to normal priority when it is handed out (None: spares start normal).
        `calm`: whether no run is waiting for its first text; spares at normal priority
        are started only then (beyond `add`). `starting`: whether a waiting process is
        still busy starting (see `priority.starting`)."""
        self._slots: dict[PoolKey, _Slot] = {}
        self._idle_secs = idle_secs
        self._shrink_secs = shrink_secs
        self._pace_secs = pace_secs
        self._spawner = spawner
        self._clock = clock
        self._idle = idle
        self._min_idle_cores = min_idle_cores
        self._promote = promote
        self._calm = calm
        self._starting = starting
        self._closed = False
        self.stats = PoolStats()
        #: Requests served by a warm process, per backend.
        self.hits: dict[str, int] = {}

    @property
    def spares_low(self) -> bool:
        """Whether spares start at low priority (so they may start beside a run's start)."""
        return self._promote is not None

    def _may_start(self) -> bool:
        return self._promote is not None or self._calm()

    def ready(self, backend: str | None = None) -> int:
        """Processes waiting for a prompt (for one backend, or all)."""
        return sum(
            len(slot.ready) for slot in self._slots.values() if backend in (None, slot.backend)
        )

    def size(self, backend: str | None = None) -> int:
        """Processes the pool currently aims to keep ready (for one backend, or all)."""
        return sum(
            s.policy.target for s in self._slots.values() if backend in (None, s.backend)
        )

    def _limits(self, floor: int, ceiling: int) -> PoolLimits:
        return PoolLimits(
            floor=floor, ceiling=max(floor, ceiling), shrink_secs=self._shrink_secs,
            pace_secs=self._pace_secs, idle_secs=self._idle_secs,
            min_idle_cores=self._min_idle_cores,
        )

    async def add(
        self, backend: str, argv: list[str], cwd: str, env: dict[str, str], size: int,
        *, ceiling: int = 0,
    ) -> None:
        """Keep at least `size` (up to `ceiling` under demand) processes of this signature
        ready, starting the first `size` now (nothing else runs yet, so no pacing)."""
        key = pool_key(argv, cwd, env)
        slot = _Slot(argv, cwd, env, backend, self._limits(size, ceiling), self._clock())
        self._slots[key] = slot
        with anyio.CancelScope(shield=True):
            while slot.live < slot.policy.target and not self._closed:
                if not await self._start(slot):
                    return

    async def adopt(
        self, backend: str, argv: list[str], cwd: str, env: dict[str, str], *, size: int,
        limit: int, ceiling: int = 0,
    ) -> None:
        """Remember a signature a request missed (it is filled by the next `refill`); keep
        at most `limit` signatures per backend, dropping the least recently used."""
        key = pool_key(argv, cwd, env)
        if key in self._slots or limit <= 0 or self._closed:
            return
        mine = [(slot.last_used, k) for k, slot in self._slots.items() if slot.backend == backend]
        mine.sort()
        while mine and len(mine) >= limit:
            _, oldest = mine.pop(0)
            slot = self._slots.pop(oldest)
            while slot.ready:
                await slot.ready.popleft().cli.discard()
        self._slots[key] = _Slot(
            argv, cwd, env, backend, self._limits(size, ceiling), self._clock()
        )

    async def take(self, key: PoolKey) -> CliProcess | None:
        """A ready process for this signature, or None (the caller runs cold)."""
        slot = self._slots.get(key)
        if slot is None:
            return None
        now = self._clock()
        slot.last_used = now
        await self._drop_unusable(slot, now)
        # Only a spare done starting answers at the floor: when none is, the pool was too
        # small for this demand (it grows), though the busy one still answers sooner than
        # a cold start and is handed out.
        done = [w for w in slot.ready if w.settled]
        slot.policy.on_request(now, ready=len(done))
        if slot.ready:
            # The oldest done starting, else the oldest (the likeliest to be nearly done).
            warm = done[0] if done else slot.ready[0]
            slot.ready.remove(warm)
            if not done:
                self.stats.busy += 1
            self.stats.hits += 1
            self.hits[slot.backend] = self.hits.get(slot.backend, 0) + 1
            if self._promote is not None:
                with anyio.CancelScope(shield=True):  # handed out either way
                    if await self._promote(warm.cli):
                        self.stats.promoted += 1
                    else:
                        self.stats.promote_failed += 1
            return warm.cli
        self.stats.misses += 1
        return None

    async def _drop_unusable(self, slot: _Slot, now: float) -> None:
        keep: deque[_Warm] = deque()
        while slot.ready:
            warm = slot.ready.popleft()
            if slot.policy.usable(now, born=warm.born, alive=warm.cli.alive):
                warm.settled = warm.settled or not self._starting(warm.cli)
                keep.append(warm)
                continue
            if warm.cli.alive:
                self.stats.expired += 1
            else:
                self.stats.died += 1
            await warm.cli.discard()
        slot.ready = keep
        for _ in range(slot.policy.surplus(now, ready=len(slot.ready))):
            self.stats.shrunk += 1
            await slot.ready.popleft().cli.discard()  # the oldest go first

    async def refill(self, key: PoolKey, *, capacity: int | None = None) -> None:
        """Start a process if the signature is below its target (paced: at most one per
        call and per `pace_secs`); end surplus ones. `capacity`: how many more runs the
        admission limits would allow; the pool never keeps more spares than that."""
        slot = self._slots.get(key)
        if slot is None or self._closed:
            return
        with anyio.CancelScope(shield=True):
            now = self._clock()
            await self._drop_unusable(slot, now)
            if not self._may_start():
                return  # a run is starting: keep_filled tries again, or the timer does
            idle = self._idle()
            if slot.policy.starts(now, ready=slot.live, capacity=capacity, idle_cores=idle):
                await self._start(slot)

    async def keep_filled(
        self, key: PoolKey, capacity: Callable[[], int | None] = lambda: None
    ) -> None:
        """Start processes one at a time, paced, until the signature reaches its target
        (run beside a live run, cancelled when it ends)."""
        slot = self._slots.get(key)
        while slot is not None and not self._closed:
            await self.refill(key, capacity=capacity())
            if slot.live >= slot.policy.target or self._slots.get(key) is not slot:
                return
            await anyio.sleep(slot.policy.limits.pace_secs or 0.01)

    async def tend(
        self, *, quiet: bool, capacity: Callable[[str], int | None] = lambda backend: None
    ) -> float:
        """Look after every signature off the request path (the pool's timer, see
        `pool_tender`): end processes past their time or beyond a target that shrank and,
        while no run is live (`quiet`), start at most one process toward a target (paced,
        within `capacity(backend)`, beyond the floor only on idle CPU). Returns the time at
        which something is next due (inf: nothing until a run changes something)."""
        if self._closed:
            return math.inf
        due = math.inf
        with anyio.CancelScope(shield=True):
            now = self._clock()
            for slot in list(self._slots.values()):
                await self._drop_unusable(slot, now)
            # Fullest last: the signature furthest below its target gets the next start.
            order = sorted(self._slots.values(), key=lambda s: s.live - s.policy.target)
            for slot in order:
                policy = slot.policy
                due = min(due, policy.next_shrink())
                due = min([due, *(w.born + policy.limits.idle_secs for w in slot.ready)])
                if not quiet or slot.live >= policy.target:
                    continue
                if slot.failed_until > now:
                    due = min(due, slot.failed_until)
                    continue
                # Below target: look again once pacing allows (or the CPU may be idle).
                due = min(due, max(policy.next_start(), now + max(policy.limits.pace_secs, 0.1)))
                idle = self._idle()
                if policy.starts(now, ready=slot.live, capacity=capacity(slot.backend),
                                 idle_cores=idle):
                    await self._start(slot)
                    quiet = False  # one start per look: CLIs starting together slow each other
        return due

    async def _start(self, slot: _Slot) -> bool:
        slot.starting += 1
        try:
            cli = await self._spawner(slot.argv, slot.cwd, slot.env, slot.backend)
        except OSError:
            # The CLI cannot start: requests will run cold and say why; the timer waits.
            slot.failed_until = self._clock() + FAILED_START_SECS
            return False
        finally:
            slot.starting -= 1
        if self._closed or slot not in self._slots.values():
            await cli.discard()  # closed or dropped while it started
            return False
        self.stats.started += 1
        slot.ready.append(_Warm(cli=cli, born=self._clock()))
        return True

    async def aclose(self) -> None:
        """Terminate every pooled process (server shutdown)."""
        self._closed = True
        with anyio.CancelScope(shield=True):
            for slot in self._slots.values():
                while slot.ready:
                    await slot.ready.popleft().cli.discard()


async def beside(main: Callable[[], Awaitable[T]], side: Callable[[], Awaitable[None]]) -> T:
    """Run `main` with `side` running beside it; `side` is cancelled when `main` ends, and
    `main`'s own exception comes out as itself (not in an exception group)."""
    results: list[T] = []

    async def run_main(tg) -> None:
        results.append(await main())
        tg.cancel_scope.cancel()

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(side)
            await run_main(tg)
    except BaseExceptionGroup as group:
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise
    return results[0]


class CpuIdle:
    """Idle cores of the machine since the previous call, from /proc/stat (Linux); None
    when unknown. Calls closer together than `min_secs` get the previous answer."""

    def __init__(self, *, min_secs: float = 0.2, path: str = "/proc/stat") -> None:
        self._path = path
        self._min_secs = min_secs
        self._last: tuple[float, int, int] | None = None
        self._answer: float | None = None
        self._cpus = os.cpu_count() or 1

    def _read(self) -> tuple[int, int] | None:
        try:
            with open(self._path, "rb") as f:
                values = [int(x) for x in f.readline().split()[1:]]
            return values[3] + values[4], sum(values[:8])  # idle + iowait, all
        except (OSError, ValueError, IndexError):
            return None

    def __call__(self) -> float | None:
        now = time.monotonic()
        if self._last is not None and now - self._last[0] < self._min_secs:
            return self._answer
        sample = self._read()
        if sample is None:
            return None
        if self._last is not None:
            idle, total = sample[0] - self._last[1], sample[1] - self._last[2]
            self._answer = self._cpus * idle / total if total > 0 else self._answer
        self._last = (now, *sample)
        return self._answer
