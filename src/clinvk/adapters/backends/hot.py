"""Hot sessions: a CLI process that stays alive after a turn, waiting for the session's next.

A cold resumed turn starts the CLI again and has it reload the transcript (~0.5 s for
claude before the model is asked); a process kept from the previous turn, fed the next user
turn on its still-open stdin, answers as fast as a warm-pool process. A hot process belongs
to exactly one backend session (its id is the key) and to the invocation it was started
with; it is ended when it idles too long, when more sessions are hot than allowed (least
recently used first), on a failed or timed-out turn, when its session is deleted and at
shutdown.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable

import anyio

from clinvk.adapters.backends.pool_policy import hot_evictions, hot_next_due
from clinvk.adapters.backends.process import (
    STDERR_TAIL_BYTES,
    CliProcess,
    LineHandler,
    ProcessGroups,
    ProcessOutcome,
)

_CHUNK = 64 * 1024


class HotProcess:
    """A CLI process whose stdin stays open between turns."""

    def __init__(self, cli: CliProcess, signature: tuple, groups: ProcessGroups | None) -> None:
        """`groups`: where the live process is registered (shutdown, crash recovery). It is
        registered without its session: a server that dies while it waits between turns
        cut nothing off, so the next server only ends it and leaves the session as it is."""
        self.cli = cli
        self.signature = signature
        self._groups = groups
        self._stdout = b""  # bytes after the last full line
        self._stderr = b""
        self.turns = 0
        if groups is not None:
            groups.add(cli.process.pid, cli.label, cli_pid=cli.cli_pid)

    @property
    def alive(self) -> bool:
        return self.cli.alive

    async def end(self) -> None:
        """Terminate the process group and release everything."""
        with anyio.CancelScope(shield=True):
            await self.cli.discard()
            if self._groups is not None:
                self._groups.discard(self.cli.process.pid)

    async def turn(
        self,
        input: bytes,
        *,
        on_line: LineHandler,
        on_stderr_line: LineHandler | None,
        done: Callable[[], bool],
        timeout: float | None,
        idle_timeout: float | None,
        replies: Callable[[], bytes] | None = None,
    ) -> tuple[ProcessOutcome, bool]:
        """Write one turn to stdin and hand over stdout lines until `done()` says the turn is
        complete; (outcome, whether the process is still alive and may take another turn).
        After each line, whatever `replies()` returns is written too (a protocol's next
        request, answers to the CLI's own requests).

        On the deadline, the idle timeout, cancellation or an early exit, the process is
        ended here: only a cleanly finished turn leaves it running.
        """
        process = self.cli.process
        assert process.stdin is not None and process.stderr is not None
        tail: deque[bytes] = deque()
        timed_out: str | None = None
        finished = False
        self.turns += 1

        async def read_stderr() -> None:
            async for chunk in process.stderr:  # type: ignore[union-attr]
                tail.append(chunk)
                while sum(map(len, tail)) - len(tail[0]) >= STDERR_TAIL_BYTES and len(tail) > 1:
                    tail.popleft()
                if on_stderr_line is None:
                    continue
                *lines, self._stderr = (self._stderr + chunk).split(b"\n")
                for line in lines:
                    if line.strip():
                        await on_stderr_line(line)

        async def receive() -> bytes:
            while True:
                try:
                    return os.read(self.cli.out_read, _CHUNK)
                except BlockingIOError:
                    await anyio.wait_readable(self.cli.out_read)

        async def read_stdout() -> None:
            nonlocal timed_out, finished
            while True:
                *lines, self._stdout = self._stdout.split(b"\n")
                for index, line in enumerate(lines):
                    if line.strip():
                        await on_line(line)
                        reply = replies() if replies is not None else b""
                        if reply:
                            await process.stdin.send(reply)  # type: ignore[union-attr]
                    if done():
                        # keep what came after the turn's last line for the next turn
                        self._stdout = b"\n".join([*lines[index + 1 :], self._stdout])
                        finished = True
                        return
                with anyio.move_on_after(idle_timeout) as idle:
                    chunk = await receive()
                if idle.cancelled_caught:
                    timed_out = "idle"
                    return
                if not chunk:
                    if self._stdout.strip():
                        await on_line(self._stdout)
                        self._stdout = b""
                    return
                self._stdout += chunk

        keep = False
        try:
            with anyio.move_on_after(timeout) as deadline:
                await process.stdin.send(input)
                async with anyio.create_task_group() as tg:
                    tg.start_soon(read_stderr)
                    await read_stdout()
                    if not finished:
                        await process.stdin.aclose()
                        with anyio.move_on_after(2):
                            await process.wait()
                    tg.cancel_scope.cancel()
            if deadline.cancelled_caught:
                timed_out = "deadline"
            keep = finished and timed_out is None and self.alive
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            keep = False  # it exited before reading the turn; its output and exit tell why
        finally:
            if not keep:
                await self.end()
        stderr = b"".join(tail)[-STDERR_TAIL_BYTES:].decode("utf-8", "replace")
        code = 0 if keep else (process.returncode if process.returncode is not None else -1)
        return ProcessOutcome(exit_code=code, stderr=stderr, timed_out=timed_out), keep


class HotSessions:
    """The hot processes, by backend session id; bounded, least recently used ended first."""

    def __init__(
        self, *, max_hot: int, idle_secs: float, clock: Callable[[], float] = anyio.current_time
    ) -> None:
        self._max = max_hot
        self._idle = idle_secs
        self._clock = clock
        self._hot: dict[str, HotProcess] = {}
        self._used: dict[str, float] = {}
        #: Bumped whenever a turn of the session starts, so a process that ran an older turn
        #: (while another ran concurrently) is not parked as the session's state.
        self._generation: dict[str, int] = {}
        self._closed = False
        self.hits = 0
        self.parked = 0

    @property
    def enabled(self) -> bool:
        return self._max > 0 and not self._closed

    def count(self) -> int:
        """Processes waiting for their session's next turn."""
        return len(self._hot)

    def begin(self, session_id: str | None) -> int:
        """A turn of `session_id` starts: its token for `park`."""
        if session_id is None:
            return 0
        self._generation[session_id] = self._generation.get(session_id, 0) + 1
        return self._generation[session_id]

    async def take(self, session_id: str, signature: tuple) -> HotProcess | None:
        """The session's waiting process if it was started the same way; any other waiting
        process of the session is ended (a cold resume will take its place)."""
        await self.maintain()
        hot = self._hot.pop(session_id, None)
        self._used.pop(session_id, None)
        if hot is None:
            return None
        if hot.signature != signature or not hot.alive:
            await hot.end()
            return None
        self.hits += 1
        return hot

    async def park(self, session_id: str | None, token: int, hot: HotProcess) -> None:
        """Keep `hot` for the session's next turn, or end it when it may not wait."""
        stale = session_id is not None and token and self._generation.get(session_id) != token
        if session_id is None or not self.enabled or stale or not hot.alive:
            await hot.end()
            return
        old = self._hot.pop(session_id, None)
        if old is not None and old is not hot:
            await old.end()
        self._hot[session_id] = hot
        self._used[session_id] = self._clock()
        self.parked += 1
        await self.maintain()

    async def maintain(self) -> None:
        """End processes idle too long and the least recently used beyond the limit."""
        for session_id in hot_evictions(
            self._used, self._clock(), max_hot=self._max, idle_secs=self._idle
        ):
            await self.end(session_id)

    def next_due(self) -> float:
        """When the next waiting process runs out of idle time (inf with none waiting)."""
        return hot_next_due(self._used, idle_secs=self._idle)

    async def end(self, session_id: str) -> None:
        """End the session's waiting process, if any (the session was deleted)."""
        self._used.pop(session_id, None)
        hot = self._hot.pop(session_id, None)
        if hot is not None:
            await hot.end()

    async def aclose(self) -> None:
        """End every waiting process (shutdown)."""
        self._closed = True
        for session_id in list(self._hot):
            await self.end(session_id)
