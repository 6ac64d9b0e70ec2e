"""Run one CLI process: stream its stdout lines, bound its stderr, and never leave it behind."""

from __future__ import annotations

import errno
import fcntl
import os
import signal
import subprocess
import sys
from collections import deque
from collections.abc import Awaitable, Callable

import anyio
import msgspec
from anyio.abc import Process

from clinvk.adapters.backends.registry import RunRegistry

#: Bytes of stderr kept (the tail): enough for a CLI's error message, bounded for chatty ones.
STDERR_TAIL_BYTES = 16 * 1024
#: Longest stderr line handed to `on_stderr_line`; a longer one is handed over in pieces of
#: this size, so a CLI that never prints a newline cannot grow a buffer without end.
STDERR_LINE_BYTES = 8 * 1024
#: Seconds between SIGTERM to the process group and SIGKILL.
TERMINATE_GRACE_SECS = 2.0
_CHUNK = 64 * 1024
#: Capacity asked for the stdout pipe. gemini echoes the whole prompt as one line and loses
#: the rest of its output when that line does not fit in the pipe (it exits 0 silently).
STDOUT_PIPE_BYTES = 8 * 1024 * 1024
_F_SETPIPE_SZ = 1031
#: The run supervisor (see supervise.py), run as a script so it starts in milliseconds.
SUPERVISOR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "supervise.py")

LineHandler = Callable[[bytes], Awaitable[None]]


class ProcessOutcome(msgspec.Struct, frozen=True, kw_only=True):
    """How a process ended."""

    exit_code: int
    stderr: str
    #: "deadline" or "idle" when we terminated it for taking too long; None otherwise.
    timed_out: str | None = None


class ProcessGroups:
    """Live CLI process groups, so shutdown can terminate whatever is still running.

    With a `registry`, every group is also written down while it lives, so the next server
    can end it should this one die without its shutdown (see registry.py).
    """

    def __init__(self, registry: RunRegistry | None = None) -> None:
        self._pids: dict[int, str] = {}
        self.registry = registry

    def add(
        self, pid: int, backend: str, *, cli_pid: int = 0, session_id: str | None = None
    ) -> None:
        self._pids[pid] = backend
        if self.registry is not None:
            try:
                self.registry.record(pid, cli_pid or pid, backend, session_id)
            except OSError:
                pass  # a full or read-only disk: the supervisor still ends it with us

    def discard(self, pid: int) -> None:
        self._pids.pop(pid, None)
        if self.registry is not None:
            self.registry.forget(pid)

    def count(self, backend: str | None = None) -> int:
        """How many groups are live (for one backend, or all)."""
        return sum(1 for b in self._pids.values() if backend in (None, b))

    def terminate_all(self) -> None:
        """SIGKILL every live group (last resort at shutdown)."""
        for pid in list(self._pids):
            _signal_group(pid, signal.SIGKILL)
            self.discard(pid)
        if self.registry is not None:
            self.registry.close()


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _descendants(pid: int) -> list[int]:
    """Every live descendant of `pid` (Linux /proc), including those in other groups."""
    children: dict[int, list[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                ppid = int(f.read().rsplit(b")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


async def _terminate(process: Process) -> None:
    """SIGTERM the whole group, wait a short grace, then SIGKILL it (gemini ignores SIGTERM
    on its launcher pid, and anyio's own cancel kills only the direct child). Descendants
    that moved to a group of their own (codex runs helper shells under setsid) are killed
    one by one."""
    escaped: list[int] = []
    if process.returncode is None:
        escaped = [p for p in _descendants(process.pid) if _pgid(p) not in (process.pid, None)]
        _signal_group(process.pid, signal.SIGTERM)
        with anyio.move_on_after(TERMINATE_GRACE_SECS):
            await process.wait()
    # Helpers the CLI spawned may outlive it; the group id stays valid while any remain.
    _signal_group(process.pid, signal.SIGKILL)
    for pid in escaped:
        _signal_group(pid, signal.SIGKILL)  # it leads its own group
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    if process.returncode is None:
        await process.wait()


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except (ProcessLookupError, PermissionError):
        return None


class CliProcess:
    """A started CLI process whose output nobody reads yet (see `drive`).

    `process` is the run's supervisor, which leads the process group (its pid is the group
    id) and exits the way the CLI does; `cli_pid` is the CLI itself.
    """

    def __init__(self, process: Process, out_read: int, label: str, cli_pid: int = 0) -> None:
        self.process = process
        self.out_read = out_read
        self.label = label
        self.cli_pid = cli_pid or process.pid

    @property
    def alive(self) -> bool:
        return self.process.returncode is None

    async def discard(self) -> None:
        """Terminate the group and release everything (for processes never driven)."""
        with anyio.CancelScope(shield=True):
            await _terminate(self.process)
            await self.process.aclose()
            os.close(self.out_read)


async def spawn(
    argv: list[str], *, cwd: str, env: dict[str, str], stdin: str | None | bool, label: str = "",
    priority: str = "normal",
) -> CliProcess:
    """Start argv under its run supervisor in a new process group, with stdout on a large
    non-blocking pipe; return once the CLI was exec'd.

    `stdin`: a file path to read stdin from (a regular file, because gemini drops a large
    prompt arriving through a pipe); True for a pipe the caller writes later (warm
    processes); None for /dev/null (codex blocks on an open stdin, claude waits 3 s).
    `priority`: "normal", or how a warm pool's spare starts low (see priority.py).
    Raises OSError when the command cannot be started (its `filename` is `cwd` when the
    working directory is missing, else the command).
    """
    stdin_file = open(stdin, "rb") if isinstance(stdin, str) else None  # noqa: SIM115
    if stdin_file is not None:
        stdin_arg = stdin_file
    else:
        stdin_arg = subprocess.PIPE if stdin is True else subprocess.DEVNULL
    out_read, out_write = _stdout_pipe()
    status_read, status_write = os.pipe()
    lifeline = _lifeline()
    supervised = [
        sys.executable, "-I", "-S", SUPERVISOR,
        str(status_write), str(lifeline), str(os.getpid()),
        *([f"--priority={priority}"] if priority != "normal" else []), "--", *argv,
    ]
    try:
        try:
            process = await anyio.open_process(
                supervised,
                stdin=stdin_arg,
                stdout=out_write,
                stderr=subprocess.PIPE,
                cwd=cwd,
                env=env,
                start_new_session=True,
                pass_fds=(status_write, lifeline),
            )
        finally:
            os.close(out_write)  # the child holds its own copy; EOF comes when it exits
            os.close(status_write)
            if stdin_file is not None:
                stdin_file.close()
        try:
            cli_pid = await _handshake(process, status_read, argv[0])
        except BaseException:
            with anyio.CancelScope(shield=True):
                await _terminate(process)
                await process.aclose()
            raise
    except BaseException:
        os.close(out_read)
        raise
    finally:
        os.close(status_read)
    return CliProcess(process, out_read, label, cli_pid)


async def _handshake(process: Process, status: int, command: str) -> int:
    """Wait for the supervisor's report: the CLI's pid, or the exec error as OSError."""
    os.set_blocking(status, False)
    data = b""
    while not data.endswith(b"\n"):
        try:
            chunk = os.read(status, 256)
        except BlockingIOError:
            await anyio.wait_readable(status)
            continue
        if not chunk:
            break
        data += chunk
    word, _, value = data.decode("ascii", "replace").strip().partition(" ")
    if word == "ok" and value.isdigit():
        return int(value)
    code = await process.wait()
    number = int(value) if word == "err" and value.isdigit() else errno.ECHILD
    if word != "err":
        stderr = b""
        if process.stderr is not None:
            with anyio.move_on_after(1):
                stderr = await process.stderr.receive()
        reason = f"the run supervisor exited with {code}: {stderr.decode(errors='replace')}"
        raise OSError(number, reason.strip(), command)
    raise OSError(number, os.strerror(number), command)


_lifeline_fds: tuple[int, int, int] | None = None


def _lifeline() -> int:
    """The read end of this process's lifeline pipe (created once; the write end is never
    inherited, so supervisors read EOF exactly when the server process is gone)."""
    global _lifeline_fds
    if _lifeline_fds is None or _lifeline_fds[0] != os.getpid():
        read, write = os.pipe()
        _lifeline_fds = (os.getpid(), read, write)
    return _lifeline_fds[1]


async def drive(
    cli: CliProcess,
    *,
    on_line: LineHandler,
    timeout: float | None,
    idle_timeout: float | None,
    groups: ProcessGroups | None = None,
    input: bytes | None = None,
    on_stderr_line: LineHandler | None = None,
    session_id: str | None = None,
) -> ProcessOutcome:
    """Feed `input` (if any) to stdin, call `on_line` for each stdout line (and
    `on_stderr_line` for each stderr line) as it arrives, and wait for the exit; terminate
    the whole group at the deadline, on idle timeout or on cancellation, whatever happens."""
    process, out_read = cli.process, cli.out_read
    if groups is not None:
        groups.add(process.pid, cli.label, cli_pid=cli.cli_pid, session_id=session_id)
    tail: deque[bytes] = deque()
    tail_size = 0
    timed_out: str | None = None

    async def write_stdin() -> None:
        assert process.stdin is not None
        try:
            if input:
                await process.stdin.send(input)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            pass  # the CLI exited early; its output and exit code tell why
        finally:
            await process.stdin.aclose()

    async def read_stderr() -> None:
        nonlocal tail_size
        assert process.stderr is not None
        pending = b""
        async for chunk in process.stderr:
            tail.append(chunk)
            tail_size += len(chunk)
            while tail_size - len(tail[0]) >= STDERR_TAIL_BYTES and len(tail) > 1:
                tail_size -= len(tail.popleft())
            if on_stderr_line is None:
                continue
            *lines, pending = (pending + chunk).split(b"\n")
            while len(pending) > STDERR_LINE_BYTES:
                lines.append(pending[:STDERR_LINE_BYTES])
                pending = pending[STDERR_LINE_BYTES:]
            for line in lines:
                if line.strip():
                    await on_stderr_line(line)
        if on_stderr_line is not None and pending.strip():
            await on_stderr_line(pending)

    async def receive() -> bytes:
        while True:
            try:
                return os.read(out_read, _CHUNK)
            except BlockingIOError:
                await anyio.wait_readable(out_read)

    async def read_stdout() -> None:
        nonlocal timed_out
        buffer = b""
        while True:
            if idle_timeout is None:
                chunk = await receive()  # no cancel scope per read on the hot path
            else:
                chunk = b""
                with anyio.move_on_after(idle_timeout) as idle:
                    chunk = await receive()
                if idle.cancelled_caught:
                    timed_out = "idle"
                    raise _Stop
            if not chunk:
                break
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                if line.strip():
                    await on_line(line)
        if buffer.strip():
            await on_line(buffer)

    try:
        with anyio.move_on_after(timeout) as deadline:
            try:
                async with anyio.create_task_group() as tg:
                    if process.stdin is not None:
                        tg.start_soon(write_stdin)
                    tg.start_soon(read_stderr)
                    await read_stdout()
                    await process.wait()
            except* _Stop:
                pass
        if deadline.cancelled_caught:
            timed_out = "deadline"
    finally:
        with anyio.CancelScope(shield=True):
            await _terminate(process)
            await process.aclose()
            os.close(out_read)
            if groups is not None:
                groups.discard(process.pid)
    stderr = b"".join(tail)[-STDERR_TAIL_BYTES:].decode("utf-8", "replace")
    code = process.returncode if process.returncode is not None else -1
    return ProcessOutcome(exit_code=code, stderr=stderr, timed_out=timed_out)


async def run_process(
    argv: list[str],
    *,
    cwd: str,
    env: dict[str, str],
    stdin: str | None,
    on_line: LineHandler,
    timeout: float | None,
    idle_timeout: float | None,
    groups: ProcessGroups | None = None,
    label: str = "",
    on_stderr_line: LineHandler | None = None,
) -> ProcessOutcome:
    """Start argv (see `spawn`) and drive it to the end (see `drive`)."""
    cli = await spawn(argv, cwd=cwd, env=env, stdin=stdin, label=label)
    return await drive(
        cli, on_line=on_line, timeout=timeout, idle_timeout=idle_timeout, groups=groups,
        on_stderr_line=on_stderr_line,
    )


def _stdout_pipe() -> tuple[int, int]:
    """A pipe for the CLI's stdout, as large as the system allows, read end non-blocking."""
    read, write = os.pipe()
    os.set_blocking(read, False)
    try:
        fcntl.fcntl(write, _F_SETPIPE_SZ, STDOUT_PIPE_BYTES)
    except OSError:
        try:
            with open("/proc/sys/fs/pipe-max-size") as f:
                fcntl.fcntl(write, _F_SETPIPE_SZ, int(f.read()))
        except (OSError, ValueError):
            pass  # keep the default size
    return read, write


class _Stop(Exception):
    """Internal: the idle timeout fired."""
