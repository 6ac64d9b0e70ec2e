"""FileSessionStore: one JSON file per session, atomic writes, one flock shared by all processes.

Layout of the directory (normally `$CLINVK_HOME/sessions`, mode 0700):

    <id>.json         one Session, mode 0600, replaced atomically on every write
    .lock             the exclusive flock every writer holds (never deleted)
    .<id>.run         flocked by the process running a turn of the session (see `hold`)
    cli/<backend>/<cli session id>.state
                      the CLI's own files of a session (msgpack + zlib, the latest version),
                      removed with the session
    .<id>.*.tmp       a write in progress (or left by a crash; harmless, never read)

Reads need no lock because a file is only ever swapped in whole by `os.replace`.
A file that cannot be decoded is never rewritten or deleted: it is treated as absent.
A write that fails (disk full, read-only file system, permissions) leaves the old file as it
was and raises SessionStoreUnavailable naming the cause.
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import fcntl
import os
import re
import tempfile
import zlib
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import anyio
import anyio.to_thread
import msgspec

from clinvk.domain.cli_state import CliState
from clinvk.domain.errors import SessionBusy, SessionNotFound, SessionStoreUnavailable
from clinvk.domain.models import Session, SessionPage, SessionQuery

LOCK_FILE = ".lock"
_SUFFIX = ".json"
_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")
_OLDEST = datetime.min.replace(tzinfo=UTC)

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Session)
_cli_encoder = msgspec.msgpack.Encoder()
_cli_decoder = msgspec.msgpack.Decoder(CliState)
CLI_DIR = "cli"


def valid_id(session_id: str) -> bool:
    """Whether `session_id` is safe to use as a file name in the store."""
    return _ID.fullmatch(session_id) is not None


class FileSessionStore:
    """SessionStore keeping one JSON file per session in `directory`."""

    kind = "file"

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self._dir = Path(directory)
        # flock alone is enough for correctness; this keeps waiting writers off the thread pool.
        self._lock = anyio.Lock()

    @property
    def directory(self) -> Path:
        """Where the session files live."""
        return self._dir

    async def create(self, session: Session) -> None:
        """Store a new session; an invalid or already used id is refused."""
        if not valid_id(session.id):
            raise ValueError(f"invalid session id {session.id!r}")
        async with self._lock:
            with _failures("save the session"):
                await anyio.to_thread.run_sync(self._create, session)

    async def get(self, session_id: str) -> Session:
        """Return one session or raise SessionNotFound."""
        path = self._path(session_id)
        with _failures("read the session"):
            session = await anyio.to_thread.run_sync(_load, path)
        if session is None:
            raise SessionNotFound(session_id)
        return session

    async def update(self, session_id: str, change: Callable[[Session], Session]) -> Session:
        """Apply `change` (run in a worker thread) under the lock; return the new value."""
        path = self._path(session_id)
        async with self._lock:
            with _failures("save the session"):
                return await anyio.to_thread.run_sync(self._update, path, change)

    async def delete(self, session_id: str) -> None:
        """Remove a session or raise SessionNotFound."""
        path = self._path(session_id)
        async with self._lock:
            with _failures("delete the session"):
                await anyio.to_thread.run_sync(self._delete, path)

    async def ids_with_prefix(self, prefix: str, limit: int) -> builtins.list[str]:
        """Up to `limit` session ids starting with `prefix`, from the file names alone."""
        if not prefix or not valid_id(prefix):
            return []

        def scan() -> builtins.list[str]:
            found = []
            for path in self._files():
                if path.stem.startswith(prefix):
                    found.append(path.stem)
                    if len(found) >= limit:
                        break
            return found

        with _failures("list the sessions"):
            return await anyio.to_thread.run_sync(scan)

    async def list(self, query: SessionQuery) -> SessionPage:
        """Sessions matching the query, most recently used first; unreadable files are skipped."""
        with _failures("list the sessions"):
            matched = await anyio.to_thread.run_sync(self._matching, query)
        end = query.offset + query.limit
        return SessionPage(
            sessions=matched[query.offset : end],
            total=len(matched),
            limit=query.limit,
            offset=query.offset,
        )

    async def purge(self, last_used_before: datetime) -> int:
        """Delete sessions last used before the given time; return how many."""
        cutoff = _aware(last_used_before)
        async with self._lock:
            with _failures("delete expired sessions"):
                return await anyio.to_thread.run_sync(self._purge, cutoff)

    async def count(self) -> int:
        """Number of session files; OSError when the directory exists but cannot be read."""
        return len(await anyio.to_thread.run_sync(self._files))

    async def save_cli_state(self, state: CliState) -> int:
        """Keep a CLI session's files beside the sessions; return the new version."""
        path = self._cli_path(state.backend, state.cli_session_id)
        if path is None:
            raise ValueError(f"invalid CLI session id {state.cli_session_id!r}")
        async with self._lock:
            with _failures("save the CLI's session files"):
                return await anyio.to_thread.run_sync(self._save_cli, path, state)

    async def load_cli_state(self, backend: str, cli_session_id: str) -> CliState | None:
        """The stored files of a CLI session, or None."""
        path = self._cli_path(backend, cli_session_id)
        if path is None:
            return None
        with _failures("read the CLI's session files"):
            return await anyio.to_thread.run_sync(_load_cli, path)

    @contextlib.asynccontextmanager
    async def hold(self, session_id: str) -> AsyncIterator[None]:
        """Hold the session for one run: a flock on `.<id>.run`, so a second process using
        this directory gets SessionBusy; the file goes when the run ends."""
        path = self._path(session_id).with_name(f".{session_id}.run")
        with _failures("hold the session"):
            fd = await anyio.to_thread.run_sync(_take_run_lock, path, session_id)
        try:
            yield
        finally:
            path.unlink(missing_ok=True)  # while still locked: the next holder makes a new one
            os.close(fd)

    # -- blocking parts, run in worker threads ------------------------------------------------

    def _path(self, session_id: str) -> Path:
        # The id comes from a URL or request body: anything but the safe alphabet is unknown.
        if not valid_id(session_id):
            raise SessionNotFound(session_id)
        return self._dir / f"{session_id}{_SUFFIX}"

    def _create(self, session: Session) -> None:
        with self._locked():
            path = self._dir / f"{session.id}{_SUFFIX}"
            if path.exists():
                raise FileExistsError(f"session {session.id!r} already exists")
            self._write(path, session)

    def _update(self, path: Path, change: Callable[[Session], Session]) -> Session:
        if not path.is_file():
            raise SessionNotFound(path.stem)
        with self._locked():
            current = _load(path)
            if current is None:
                raise SessionNotFound(path.stem)
            new = change(current)
            if new.id != current.id:
                raise ValueError("a session update must not change the session id")
            self._write(path, new)
            return new

    def _delete(self, path: Path) -> None:
        if not path.is_file():
            raise SessionNotFound(path.stem)
        with self._locked():
            session = _load(path)
            if session is None:
                raise SessionNotFound(path.stem)
            path.unlink()
            _fsync_dir(self._dir)
            self._drop_cli(session)

    def _cli_path(self, backend: str, cli_session_id: str) -> Path | None:
        if not (valid_id(backend) and valid_id(cli_session_id)):
            return None
        return self._dir / CLI_DIR / backend / f"{cli_session_id}.state"

    def _save_cli(self, path: Path, state: CliState) -> int:
        with self._locked():
            old = _load_cli(path)
            version = (old.version if old is not None else 0) + 1
            stored = msgspec.structs.replace(state, version=version)
            data = zlib.compress(_cli_encoder.encode(stored))
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as file:
                    file.write(data)
                    file.flush()
                    os.fsync(file.fileno())
                os.replace(tmp, path)
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
                raise
            return version

    def _drop_cli(self, session: Session) -> None:
        """Remove the CLI files kept for a deleted session (the lock is held)."""
        if session.backend_session_id and valid_id(session.backend_session_id):
            for path in (self._dir / CLI_DIR).glob(f"*/{session.backend_session_id}.state"):
                path.unlink(missing_ok=True)

    def _matching(self, query: SessionQuery) -> builtins.list[Session]:
        found = [
            s
            for s in self._sessions()
            if query.backend in (None, s.backend) and query.status in (None, s.status)
        ]
        found.sort(key=lambda s: (_when(s.last_used) or _OLDEST, s.id), reverse=True)
        return found

    def _purge(self, cutoff: datetime) -> int:
        if not self._dir.is_dir():
            return 0
        removed = 0
        with self._locked():
            # Re-read under the lock so a session touched a moment ago is kept.
            for session in self._sessions():
                when = _when(session.last_used)
                if when is not None and when < cutoff:
                    (self._dir / f"{session.id}{_SUFFIX}").unlink(missing_ok=True)
                    self._drop_cli(session)
                    removed += 1
            if removed:
                _fsync_dir(self._dir)
        return removed

    def _files(self) -> builtins.list[Path]:
        try:
            with os.scandir(self._dir) as entries:
                names = [entry.name for entry in entries]
        except FileNotFoundError:
            return []
        return [
            self._dir / name
            for name in names
            if name.endswith(_SUFFIX) and valid_id(name[: -len(_SUFFIX)])
        ]

    def _sessions(self) -> Iterator[Session]:
        for path in self._files():
            try:
                session = _load(path)
            except OSError:
                continue
            if session is not None:
                yield session

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold the exclusive flock every process writing this directory takes."""
        self._dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self._dir / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the flock

    def _write(self, path: Path, session: Session) -> None:
        data = _encoder.encode(session)
        # mkstemp creates the file 0600, in the same directory so os.replace is atomic.
        fd, tmp = tempfile.mkstemp(dir=self._dir, prefix=f".{path.stem}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        _fsync_dir(self._dir)


_CAUSES = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is used up",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
}


@contextlib.contextmanager
def _failures(action: str) -> Iterator[None]:
    """The one place an OSError of the store becomes SessionStoreUnavailable (an id that is
    already taken stays FileExistsError: that is the caller's to handle)."""
    try:
        yield
    except FileExistsError:
        raise
    except OSError as exc:
        name = errno.errorcode.get(exc.errno or 0, "")
        cause = _CAUSES.get(exc.errno or 0, exc.strerror or "input/output error")
        raise SessionStoreUnavailable(action, f"{cause} ({name})" if name else cause) from exc


def _take_run_lock(path: Path, session_id: str) -> int:
    """An fd holding the flock of `path`; SessionBusy when another process holds it."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise SessionBusy(session_id) from None
        except BaseException:
            os.close(fd)
            raise
        try:
            current = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            current = False
        if current:
            return fd
        # The holder before us removed the file between our open and flock: lock the new one.
        os.close(fd)


def _load_cli(path: Path) -> CliState | None:
    """The CLI state stored in `path`; None when it is missing or unreadable."""
    try:
        return _cli_decoder.decode(zlib.decompress(path.read_bytes()))
    except FileNotFoundError:
        return None
    except (zlib.error, msgspec.DecodeError):
        return None


def _load(path: Path) -> Session | None:
    """The session stored in `path`; None when it is missing, corrupt or not under its own id."""
    try:
        data = path.read_bytes()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return None
    try:
        session = _decoder.decode(data)
    except msgspec.DecodeError:
        return None
    return session if session.id == path.stem else None


def _fsync_dir(directory: Path) -> None:
    # Makes the rename or unlink itself durable, not only the file's contents.
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _when(stamp: str) -> datetime | None:
    try:
        return _aware(datetime.fromisoformat(stamp))
    except ValueError:
        return None


def _aware(moment: datetime) -> datetime:
    # Timestamps without an offset are taken as UTC, which is what clinvk writes.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
