"""A warm pool: CLI processes started ahead of time that read their prompt later.

A cold `claude -p` spends ~0.45 s starting before the model is even asked; a process
started in advance with `--input-format stream-json` answers ~0.06 s after the prompt is
written. Each pooled process serves exactly one request and is then gone (its replacement
is started fresh), so no conversation context ever carries from one request to the next.
"""

from __future__ import annotations

import time
from collections import deque

import anyio
import msgspec

from clinvk.adapters.backends.process import CliProcess, spawn

PoolKey = tuple


class _Warm(msgspec.Struct):
    cli: CliProcess
    born: float


class _Slot(msgspec.Struct):
    """One pooled signature: how to start it and the processes ready for it."""

    argv: list[str]
    cwd: str
    env: dict[str, str]
    backend: str
    size: int
    ready: deque = msgspec.field(default_factory=deque)
    last_used: float = 0.0


class PoolStats(msgspec.Struct):
    hits: int = 0
    misses: int = 0
    started: int = 0
    expired: int = 0
    died: int = 0


def pool_key(argv: list[str], cwd: str, env: dict[str, str]) -> PoolKey:
    """What a request must match exactly to use a pooled process."""
    return (tuple(argv), cwd, tuple(sorted(env.items())))


class WarmPool:
    """Bounded sets of ready processes, one set per pooled signature."""

    def __init__(self, *, idle_secs: float = 300) -> None:
        self._slots: dict[PoolKey, _Slot] = {}
        self._idle_secs = idle_secs
        self._closed = False
        self.stats = PoolStats()
        #: Requests served by a warm process, per backend.
        self.hits: dict[str, int] = {}

    def ready(self, backend: str | None = None) -> int:
        """Processes waiting for a prompt (for one backend, or all)."""
        return sum(
            len(slot.ready) for slot in self._slots.values() if backend in (None, slot.backend)
        )

    def size(self, backend: str | None = None) -> int:
        """Configured pool size (for one backend, or all)."""
        return sum(s.size for s in self._slots.values() if backend in (None, s.backend))

    async def add(
        self, backend: str, argv: list[str], cwd: str, env: dict[str, str], size: int
    ) -> None:
        """Keep `size` processes of this signature ready, starting them now."""
        key = pool_key(argv, cwd, env)
        self._slots[key] = _Slot(
            argv=argv, cwd=cwd, env=env, backend=backend, size=size, last_used=time.monotonic()
        )
        await self.refill(key)

    async def adopt(
        self, backend: str, argv: list[str], cwd: str, env: dict[str, str], *, size: int,
        limit: int,
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
            argv=argv, cwd=cwd, env=env, backend=backend, size=size, last_used=time.monotonic()
        )

    async def take(self, key: PoolKey) -> CliProcess | None:
        """A ready process for this signature, or None (the caller runs cold)."""
        slot = self._slots.get(key)
        if slot is None:
            return None
        now = time.monotonic()
        slot.last_used = now
        while slot.ready:
            warm: _Warm = slot.ready.popleft()
            if not warm.cli.alive:
                self.stats.died += 1
                await warm.cli.discard()
            elif now - warm.born > self._idle_secs:
                self.stats.expired += 1
                await warm.cli.discard()
            else:
                self.stats.hits += 1
                self.hits[slot.backend] = self.hits.get(slot.backend, 0) + 1
                return warm.cli
        self.stats.misses += 1
        return None

    async def refill(self, key: PoolKey) -> None:
        """Start processes until the signature has its full count ready again."""
        slot = self._slots.get(key)
        if slot is None or self._closed:
            return
        with anyio.CancelScope(shield=True):
            while len(slot.ready) < slot.size and not self._closed:
                try:
                    cli = await spawn(
                        slot.argv, cwd=slot.cwd, env=slot.env, stdin=True,
                        label=slot.backend,
                    )
                except OSError:
                    return  # the CLI cannot start; requests will run cold and say why
                self.stats.started += 1
                slot.ready.append(_Warm(cli=cli, born=time.monotonic()))

    async def aclose(self) -> None:
        """Terminate every pooled process (server shutdown)."""
        self._closed = True
        for slot in self._slots.values():
            while slot.ready:
                await slot.ready.popleft().cli.discard()
