"""Resource faults named: store writes failing with ENOSPC / EROFS / EACCES leave every file
whole and say why; a CLI killed by a signal or a vanished workdir is told as such."""

from __future__ import annotations

import errno
import os
import signal

import pytest

from clinvk.adapters.backends.faults import explain_failure, start_failure
from clinvk.adapters.sessions import file_store
from clinvk.adapters.sessions.file_store import FileSessionStore
from clinvk.domain.errors import (
    BackendFailed,
    BackendUnavailable,
    SessionStoreUnavailable,
)
from clinvk.domain.models import Session


def _session(session_id: str = "s1", title: str = "t") -> Session:
    return Session(id=session_id, backend="claude", created_at="2026-01-01T00:00:00Z",
                   last_used="2026-01-01T00:00:00Z", working_dir="/tmp", title=title)


def _failing(code: int):
    def fail(*args, **kwargs):
        raise OSError(code, os.strerror(code))
    return fail


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("code", "cause"),
    [(errno.ENOSPC, "the disk is full (ENOSPC)"), (errno.EROFS, "read-only (EROFS)"),
     (errno.EACCES, "permission denied (EACCES)"), (errno.EDQUOT, "quota")],
)
@pytest.mark.parametrize("where", ["write", "replace"])
async def test_a_failed_store_write_names_the_cause_and_keeps_the_file(
    tmp_path, monkeypatch, code, cause, where
):
    """An update or create that fails while writing or renaming raises
    SessionStoreUnavailable naming the cause; the stored file is byte for byte the same
    and no temp file is left."""
    store = FileSessionStore(tmp_path)
    await store.create(_session())
    before = (tmp_path / "s1.json").read_bytes()
    if where == "write":
        monkeypatch.setattr(file_store.os, "fsync", _failing(code))
    else:
        monkeypatch.setattr(file_store.os, "replace", _failing(code))
    with pytest.raises(SessionStoreUnavailable) as updating:
        await store.update("s1", lambda s: s.__class__(**{**_fields(s), "title": "new"}))
    with pytest.raises(SessionStoreUnavailable) as creating:
        await store.create(_session("s2"))
    monkeypatch.undo()
    for caught in (updating, creating):
        assert cause in caught.value.message and caught.value.code == "session_store_unavailable"
    assert (tmp_path / "s1.json").read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == [".lock", "s1.json"]
    assert (await store.get("s1")).title == "t"


def _fields(session: Session) -> dict:
    return {f: getattr(session, f) for f in session.__struct_fields__}


@pytest.mark.anyio
async def test_an_unreadable_store_is_unavailable_not_a_crash(tmp_path, monkeypatch):
    """Listing a store whose directory cannot be read is SessionStoreUnavailable."""
    store = FileSessionStore(tmp_path)
    monkeypatch.setattr(file_store.os, "scandir", _failing(errno.EACCES))
    with pytest.raises(SessionStoreUnavailable, match="permission denied"):
        await store.ids_with_prefix("s", 5)


@pytest.mark.anyio
async def test_an_existing_id_is_still_file_exists(tmp_path):
    """A taken id stays FileExistsError (the caller's case), not a store fault."""
    store = FileSessionStore(tmp_path)
    await store.create(_session())
    with pytest.raises(FileExistsError):
        await store.create(_session())


@pytest.mark.parametrize(
    ("code", "name", "oom"),
    [(-signal.SIGKILL, "SIGKILL", True), (-signal.SIGSEGV, "SIGSEGV", False)],
)
def test_a_cli_killed_by_a_signal_is_said_so(tmp_path, code, name, oom):
    """A run that ended by a signal clinvk did not send names the signal (and, for SIGKILL,
    the out-of-memory killer), keeping the partial result."""
    failed = BackendFailed("codex", "codex exited with -9", exit_code=code, result="partial")
    explained = explain_failure(failed, code, str(tmp_path))
    assert explained is not None and name in explained.message
    assert ("out-of-memory" in explained.message) is oom
    assert explained.result == "partial" and explained.exit_code == code


def test_a_workdir_deleted_during_a_failed_run_is_said_so(tmp_path):
    """A failed run whose workdir is gone says so, with the CLI's own words after it."""
    gone = str(tmp_path / "gone")
    explained = explain_failure(BackendFailed("gemini", "ENOENT: uv_cwd", exit_code=1), 1, gone)
    assert explained is not None and gone in explained.message and "uv_cwd" in explained.message


def test_an_ordinary_failure_is_left_alone(tmp_path):
    """A CLI failure with its workdir in place and a normal exit code keeps its message."""
    assert explain_failure(BackendFailed("claude", "API 500", exit_code=1), 1, str(tmp_path)) \
        is None


def test_a_start_failure_tells_workdir_from_command(tmp_path):
    """Failing to start in a missing workdir names the workdir (502); a missing command is
    BackendUnavailable (503) naming it."""
    gone = str(tmp_path / "gone")
    no_dir = start_failure("claude", "/bin/claude", gone,
                           FileNotFoundError(errno.ENOENT, "No such file", gone))
    assert isinstance(no_dir, BackendFailed) and gone in no_dir.message
    no_cli = start_failure("claude", "/x/claude", str(tmp_path),
                           FileNotFoundError(errno.ENOENT, "No such file", "/x/claude"))
    assert isinstance(no_cli, BackendUnavailable) and "/x/claude" in no_cli.message
