"""An asyncio event loop whose clock only moves when every task is waiting for a timer.

For unit tests of pure-async code (fakes only: no threads, sockets or subprocesses). Time
jumps straight to the next timer as soon as nothing else can run, like trio's MockClock
with `autojump_threshold=0`. So a deadline fires only once everything that could finish
before it has finished, however slow or busy the machine is, and a 300 s deadline costs
no real time. Use it by overriding the `anyio_backend` fixture in a test module:

    @pytest.fixture
    def anyio_backend():
        return VIRTUAL_TIME
"""

from __future__ import annotations

import asyncio


class AutojumpEventLoop(asyncio.SelectorEventLoop):
    """A selector event loop that skips idle time instead of sleeping through it."""

    def __init__(self) -> None:
        super().__init__()
        self._skipped = 0.0
        select = self._selector.select  # type: ignore[attr-defined]

        def autojump_select(timeout: float | None = None):
            events = select(0)
            if events or timeout == 0:
                return events
            if timeout is None:  # no timer at all: only outside events can wake us
                return select(None)
            self._skipped += timeout  # nothing to do until the next timer: go there now
            return []

        self._selector.select = autojump_select  # type: ignore[attr-defined]

    def time(self) -> float:
        return super().time() + self._skipped


#: The `anyio_backend` value that runs a test on AutojumpEventLoop.
VIRTUAL_TIME = ("asyncio", {"loop_factory": AutojumpEventLoop})


def jumped() -> float:
    """Virtual seconds the running AutojumpEventLoop has skipped so far: it changes only
    when a timer ran out with nothing else to do (so a test can tell no wait happened)."""
    loop = asyncio.get_running_loop()
    assert isinstance(loop, AutojumpEventLoop)
    return loop._skipped
