"""FileSessionStore: durable JSON files, atomic writes, a lock that holds across processes.

What every store must do is in test_session_store_contract.py (run against this store too).
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import anyio
import msgspec
import pytest

from clinvk.adapters.sessions import file_store
from clinvk.adapters.sessions.file_store import FileSessionStore
from clinvk.domain.errors import SessionNotFound, SessionStoreUnavailable
from clinvk.domain.models import SessionQuery
from tests.unit.test_session_store_contract import bump, make


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def store(tmp_path: Path) -> FileSessionStore:
    return FileSessionStore(tmp_path / "sessions")


@pytest.mark.anyio
async def test_files_and_directory_are_private(store: FileSessionStore) -> None:
    """The directory is created 0700 on first write and each session file is 0600."""
    assert not store.directory.exists()
    await store.create(make())
    assert stat.S_IMODE(store.directory.stat().st_mode) == 0o700
    assert stat.S_IMODE((store.directory / "s1.json").stat().st_mode) == 0o600


@pytest.mark.anyio
async def test_writes_leave_no_temp_files(store: FileSessionStore) -> None:
    """After creates and updates the directory holds only session files and the lock file."""
    await store.create(make("a"))
    await store.create(make("b"))
    for _ in range(3):
        await store.update("a", bump)
    assert sorted(os.listdir(store.directory)) == [".lock", "a.json", "b.json"]


@pytest.mark.anyio
async def test_a_hold_leaves_no_file(store: FileSessionStore) -> None:
    """The run lock file of a hold is gone once the hold ends."""
    await store.create(make())
    async with store.hold("s1"):
        assert (store.directory / ".s1.run").exists()
    assert sorted(os.listdir(store.directory)) == [".lock", "s1.json"]


@pytest.mark.anyio
async def test_failed_write_keeps_old_file(
    store: FileSessionStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write that fails midway leaves the previous file intact and removes its temp file."""
    await store.create(make())
    before = (store.directory / "s1.json").read_bytes()

    def broken_fsync(fd: int) -> None:
        raise OSError("disk on fire")

    monkeypatch.setattr(file_store.os, "fsync", broken_fsync)
    with pytest.raises(SessionStoreUnavailable) as caught:
        await store.update("s1", bump)
    assert "disk on fire" in str(caught.value.__cause__)
    monkeypatch.undo()
    assert (store.directory / "s1.json").read_bytes() == before
    assert sorted(os.listdir(store.directory)) == [".lock", "s1.json"]


@pytest.mark.anyio
async def test_unknown_ids_are_not_found(store: FileSessionStore) -> None:
    """get, update and delete of an id that was never stored raise SessionNotFound."""
    with pytest.raises(SessionNotFound):
        await store.get("nope")
    with pytest.raises(SessionNotFound):
        await store.update("nope", bump)
    with pytest.raises(SessionNotFound):
        await store.delete("nope")
    assert not store.directory.exists()


@pytest.mark.parametrize(
    "bad_id",
    ["../outside", "..", ".", "", "a/b", "/etc/passwd", "a\n", "x.json", "é", "a" * 129, "a b"],
)
@pytest.mark.anyio
async def test_crafted_ids_cannot_escape(tmp_path: Path, bad_id: str) -> None:
    """An id outside [A-Za-z0-9_-]{1,128} is not found and never touches a file."""
    store = FileSessionStore(tmp_path / "sessions")
    await store.create(make("inside"))
    (tmp_path / "outside.json").write_bytes(msgspec.json.encode(make("outside")))
    with pytest.raises(SessionNotFound):
        await store.get(bad_id)
    with pytest.raises(SessionNotFound):
        await store.update(bad_id, bump)
    with pytest.raises(SessionNotFound):
        await store.delete(bad_id)
    assert (tmp_path / "outside.json").exists()
    with pytest.raises(ValueError):
        await store.create(make(bad_id))


@pytest.mark.anyio
async def test_list_of_missing_directory_is_empty(store: FileSessionStore) -> None:
    """Listing before anything was written gives an empty page and creates nothing."""
    page = await store.list(SessionQuery())
    assert (page.sessions, page.total) == ([], 0)
    assert await store.count() == 0
    assert not store.directory.exists()


@pytest.mark.anyio
async def test_corrupt_file_is_skipped_and_untouched(store: FileSessionStore) -> None:
    """A corrupt session file is absent from list, not found by id, and never modified."""
    await store.create(make("good", last_used="2000-01-01T00:00:00Z"))
    corrupt = store.directory / "bad.json"
    corrupt.write_bytes(b'{"id": "bad", "backend": ')
    wrong_id = store.directory / "alias.json"
    wrong_id.write_bytes(msgspec.json.encode(make("good")))

    page = await store.list(SessionQuery())
    assert [s.id for s in page.sessions] == ["good"]
    for bad in ("bad", "alias"):
        with pytest.raises(SessionNotFound):
            await store.get(bad)
        with pytest.raises(SessionNotFound):
            await store.update(bad, bump)
        with pytest.raises(SessionNotFound):
            await store.delete(bad)
    assert await store.purge(datetime(2100, 1, 1, tzinfo=UTC)) == 1
    assert corrupt.read_bytes() == b'{"id": "bad", "backend": '
    assert wrong_id.exists()


@pytest.mark.anyio
async def test_count(store: FileSessionStore, tmp_path: Path) -> None:
    """count is the number of session files, and raises OSError when the directory is unusable."""
    for i in range(3):
        await store.create(make(f"s{i}"))
    assert await store.count() == 3
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    with pytest.raises(OSError):
        await FileSessionStore(not_a_dir).count()


_WORKER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import anyio, msgspec
    from clinvk.adapters.sessions.file_store import FileSessionStore

    directory, go = sys.argv[1], Path(sys.argv[2])
    while not go.exists():
        time.sleep(0.005)

    def bump(s):
        return msgspec.structs.replace(s, turn_count=s.turn_count + 1)

    async def main():
        store = FileSessionStore(directory)
        for _ in range(50):
            await store.update("s1", bump)

    anyio.run(main)
    """
)


@pytest.mark.anyio
async def test_concurrent_updates_across_processes(tmp_path: Path) -> None:
    """Two OS processes each doing 50 read-modify-write updates end at exactly 100."""
    store = FileSessionStore(tmp_path / "sessions")
    await store.create(make())
    go = tmp_path / "go"
    argv = [sys.executable, "-c", _WORKER, str(store.directory), str(go)]
    workers = [subprocess.Popen(argv, stderr=subprocess.PIPE) for _ in range(2)]
    go.touch()
    for worker in workers:
        _, err = await anyio.to_thread.run_sync(worker.communicate)
        assert worker.returncode == 0, err.decode()
    assert (await store.get("s1")).turn_count == 100
