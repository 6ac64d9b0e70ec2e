"""The run registry: the CLI runs a server has live, on disk, so the next server can end them.

Layout (normally `$CLINVK_HOME/runs`, next to the session store):

    <host>.<pid>.<start>/         one folder per server process (its replica's own)
        server.json               that server: host, boot id, pid, start time
        <group>.json              one live run: its process group (the supervisor's pid),
                                  the CLI's pid, both start times, backend, clinvk session

A run's file is written when it starts and removed when it ends; a server that stops
cleanly removes its folder. What remains belongs to a server that died. On start, a server
reaps the folders of dead servers on its own host (another host's folders are that
replica's to reap): it ends every process that is still the one recorded — same pid *and*
same start time, so a reused pid is never signalled — and reports the runs' sessions so
they can be marked `error`.

Start times are the kernel's (`/proc/<pid>/stat`, clock ticks since boot), compared only
within the same boot (`/proc/sys/kernel/random/boot_id`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import tempfile
from pathlib import Path

import msgspec

_SERVER = "server.json"


class ServerRecord(msgspec.Struct, frozen=True, kw_only=True):
    """The server process a registry folder belongs to."""

    host: str
    boot_id: str
    pid: int
    start: int


class LiveRun(msgspec.Struct, frozen=True, kw_only=True):
    """One live CLI run: its process group (led by the run's supervisor) and its CLI."""

    group: int
    group_start: int
    cli_pid: int
    cli_start: int
    backend: str
    session_id: str | None = None
    boot_id: str = ""


class ReapedRun(msgspec.Struct, frozen=True, kw_only=True):
    """A run a dead server left behind, and what start-up did about it."""

    run: LiveRun
    #: Processes that were still running and were killed now.
    killed: int
    reason: str


def boot_id() -> str:
    """This boot's id ("" where the kernel does not tell)."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return ""


def _stat(pid: int) -> list[bytes] | None:
    """Fields 3.. of /proc/<pid>/stat (after the command name), None for no such process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None


def start_time(pid: int) -> int | None:
    """When `pid` started (clock ticks since boot); None when it is not running (or a zombie)."""
    fields = _stat(pid)
    if fields is None or len(fields) < 20 or fields[0] in (b"Z", b"X"):
        return None
    return int(fields[19])


def _processes() -> dict[int, tuple[int, int, int]]:
    """Every live process: pid -> (parent pid, process group, start time)."""
    found = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return {}
    for entry in entries:
        if entry.isdigit():
            fields = _stat(int(entry))
            if fields is not None and len(fields) >= 20 and fields[0] not in (b"Z", b"X"):
                found[int(entry)] = (int(fields[1]), int(fields[2]), int(fields[19]))
    return found


def _kill_verified(run: LiveRun) -> int:
    """SIGKILL what is left of `run`, signalling only processes proven to be its own;
    return how many were signalled."""
    procs = _processes()
    leader = procs.get(run.group)
    cli = procs.get(run.cli_pid)
    roots = []
    if leader is not None and leader[2] == run.group_start:
        roots.append(run.group)
    if cli is not None and cli[2] == run.cli_start:
        roots.append(run.cli_pid)
    if not roots:
        return 0
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in procs.items():
        children.setdefault(ppid, []).append(pid)
    # The group's number cannot be taken by another group while a verified member is in it.
    targets = {pid for pid, (_, pgid, start) in procs.items()
               if pgid == run.group and start >= run.group_start}
    todo = list(roots)
    while todo:
        pid = todo.pop()
        targets.add(pid)
        todo.extend(children.get(pid, []))
    for pid in targets:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    return len(targets)


class RunRegistry:
    """This server's live runs on disk, and the reaping of dead servers' runs."""

    def __init__(self, directory: str | os.PathLike[str], *, host: str | None = None) -> None:
        self._root = Path(directory)
        self._host = host or socket.gethostname()
        self._me: Path | None = None
        self._boot = boot_id()

    @property
    def directory(self) -> Path:
        return self._root

    def _own(self) -> Path:
        """This server's folder, created (with server.json) on first use."""
        if self._me is None or self._me.parent != self._root:
            pid = os.getpid()
            record = ServerRecord(
                host=self._host, boot_id=self._boot, pid=pid, start=start_time(pid) or 0
            )
            folder = self._root / f"{_safe(self._host)}.{pid}.{record.start}"
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            _write_atomic(folder / _SERVER, msgspec.json.encode(record))
            self._me = folder
        return self._me

    def record(self, group: int, cli_pid: int, backend: str, session_id: str | None) -> None:
        """Note a run that just started (OSError when the folder cannot be written)."""
        run = LiveRun(
            group=group,
            group_start=start_time(group) or 0,
            cli_pid=cli_pid,
            cli_start=start_time(cli_pid) or 0,
            backend=backend,
            session_id=session_id,
            boot_id=self._boot,
        )
        _write_atomic(self._own() / f"{group}.json", msgspec.json.encode(run))

    def forget(self, group: int) -> None:
        """The run has ended: drop its file."""
        if self._me is not None:
            with contextlib.suppress(OSError):
                (self._me / f"{group}.json").unlink()

    def close(self) -> None:
        """This server stops cleanly: remove its folder (runs still listed stay for reaping)."""
        if self._me is None:
            return
        with contextlib.suppress(OSError):
            (self._me / _SERVER).unlink()
            self._me.rmdir()  # fails (and keeps the folder) while a run is still listed
        self._me = None

    def reap(self) -> list[ReapedRun]:
        """End what dead servers of this host left running; return their runs.

        Their records are left in place until `clear` (call it once the sessions are marked,
        so a server that dies while reaping leaves the work to the next one).
        """
        reaped = []
        for folder, server in self._dead_servers():
            for path in sorted(folder.glob("*.json")):
                if path.name == _SERVER:
                    continue
                run = _read(path, LiveRun)
                if run is None:
                    continue
                same_boot = bool(run.boot_id) and run.boot_id == self._boot
                killed = _kill_verified(run) if same_boot else 0
                cause = "the machine restarted" if not same_boot else "the server stopped"
                reason = (
                    f"interrupted: {cause} (server pid {server.pid}) while this {run.backend} "
                    "run was in progress"
                )
                if killed:
                    reason += f"; {killed} leftover process(es) were killed at start-up"
                reaped.append(ReapedRun(run=run, killed=killed, reason=reason))
        return reaped

    def clear(self) -> None:
        """Remove the folders of dead servers of this host (after `reap`)."""
        for folder, _ in self._dead_servers():
            shutil.rmtree(folder, ignore_errors=True)

    def _dead_servers(self) -> list[tuple[Path, ServerRecord]]:
        try:
            folders = [p for p in self._root.iterdir() if p.is_dir()]
        except OSError:
            return []
        dead = []
        for folder in folders:
            server = _read(folder / _SERVER, ServerRecord)
            if server is None:
                continue  # not a registry folder, or one whose server died creating it
            if server.host != self._host or folder == self._me:
                continue
            alive = server.boot_id == self._boot and start_time(server.pid) == server.start
            if not alive:
                dead.append((folder, server))
        return dead


def _safe(host: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in host) or "host"


def _read(path: Path, kind):
    try:
        return msgspec.json.decode(path.read_bytes(), type=kind)
    except (OSError, msgspec.DecodeError):
        return None


def _write_atomic(path: Path, data: bytes) -> None:
    # A crash mid-write leaves the old file (or none), never half a record.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
