"""The run registry and the start-up reaper: what a dead server left running is ended, only
processes proven to be its own are signalled, and the sessions are marked `error`."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import msgspec
import pytest

from clinvk.adapters.backends.process import ProcessGroups
from clinvk.adapters.backends.registry import (
    LiveRun,
    RunRegistry,
    ServerRecord,
    boot_id,
    start_time,
)
from clinvk.domain.config import Config
from clinvk.domain.errors import SessionStoreUnavailable
from clinvk.domain.models import Session
from clinvk.entrypoints.bootstrap import bootstrap
from clinvk.entrypoints.recovery import reap_interrupted_runs
from tests.fakes import FakeBackendRunner, FakeClock, FakeIds, FakeSessionStore

HOST = "replica-a"


@pytest.fixture
def sleeper():
    """A process in a group of its own, as a CLI run's supervisor is (killed at the end)."""
    started: list[subprocess.Popen] = []

    def start() -> subprocess.Popen:
        p = subprocess.Popen(["sleep", "300"], start_new_session=True)
        started.append(p)
        while start_time(p.pid) is None:
            pass
        return p

    yield start
    for p in started:
        if p.poll() is None:
            p.kill()
        p.wait()


def _dead_server(root: Path, *, host: str = HOST, boot: str | None = None) -> Path:
    """The folder a server left when it died: its pid is ours now, with another start time
    (pid reuse: the live process with that pid is not that server)."""
    me = os.getpid()
    record = ServerRecord(host=host, boot_id=boot or boot_id(), pid=me,
                          start=(start_time(me) or 0) - 1)
    folder = root / f"{host}.{me}.{record.start}"
    folder.mkdir(parents=True)
    (folder / "server.json").write_bytes(msgspec.json.encode(record))
    return folder


def _run_file(folder: Path, p: subprocess.Popen, *, session: str | None, shift: int = 0,
              boot: str | None = None) -> LiveRun:
    start = (start_time(p.pid) or 0) + shift
    run = LiveRun(group=p.pid, group_start=start, cli_pid=p.pid, cli_start=start,
                  backend="codex", session_id=session, boot_id=boot or boot_id())
    (folder / f"{p.pid}.json").write_bytes(msgspec.json.encode(run))
    return run


def test_a_live_run_is_written_down_and_dropped_when_it_ends(tmp_path, sleeper):
    """A group added to ProcessGroups is on disk with both start times until discarded;
    a clean stop removes the server's folder."""
    registry = RunRegistry(tmp_path, host=HOST)
    groups = ProcessGroups(registry)
    p = sleeper()
    groups.add(p.pid, "claude", cli_pid=p.pid, session_id="s1")
    [folder] = [f for f in tmp_path.iterdir() if f.is_dir()]
    run = msgspec.json.decode((folder / f"{p.pid}.json").read_bytes(), type=LiveRun)
    assert run.session_id == "s1" and run.group_start == start_time(p.pid)
    server = msgspec.json.decode((folder / "server.json").read_bytes(), type=ServerRecord)
    assert server.pid == os.getpid() and server.start == start_time(os.getpid())
    groups.discard(p.pid)
    assert not (folder / f"{p.pid}.json").exists()
    groups.terminate_all()
    assert list(tmp_path.iterdir()) == []


def test_a_live_server_of_the_same_host_is_left_alone(tmp_path, sleeper):
    """Another live server sharing the home (same host, its pid with its start time) keeps
    its runs: nothing is reaped."""
    other = RunRegistry(tmp_path, host=HOST)
    p = sleeper()
    other.record(p.pid, p.pid, "gemini", "s1")  # this very process plays the live server
    assert RunRegistry(tmp_path, host=HOST).reap() == []
    assert p.poll() is None


def test_survivors_of_a_dead_server_are_killed_and_reported(tmp_path, sleeper):
    """A dead server's run whose process is still the recorded one (pid and start time) is
    killed; its session is reported with a reason; clear() removes the folder."""
    folder = _dead_server(tmp_path)
    p = sleeper()
    _run_file(folder, p, session="s1")
    registry = RunRegistry(tmp_path, host=HOST)
    [reaped] = registry.reap()
    assert reaped.run.session_id == "s1" and reaped.killed == 1
    assert "interrupted" in reaped.reason and "codex" in reaped.reason
    assert p.wait(30) == -signal.SIGKILL
    registry.clear()
    assert not folder.exists()


def test_a_reused_pid_is_never_signalled(tmp_path, sleeper):
    """A recorded pid now held by another process (different start time) is not killed; the
    session is still reported as interrupted."""
    folder = _dead_server(tmp_path)
    p = sleeper()
    _run_file(folder, p, session="s1", shift=-5)  # recorded 5 ticks before p started
    [reaped] = RunRegistry(tmp_path, host=HOST).reap()
    assert reaped.killed == 0 and reaped.run.session_id == "s1"
    assert p.poll() is None


def test_another_hosts_runs_are_its_own_to_reap(tmp_path, sleeper):
    """A folder of another replica (another host name) is not touched."""
    folder = _dead_server(tmp_path, host="replica-b")
    p = sleeper()
    _run_file(folder, p, session="s1")
    registry = RunRegistry(tmp_path, host=HOST)
    assert registry.reap() == []
    registry.clear()
    assert folder.exists() and p.poll() is None


def test_runs_of_an_earlier_boot_are_reported_without_signals(tmp_path, sleeper):
    """After a reboot start times mean nothing: the runs are reported, nothing is signalled."""
    folder = _dead_server(tmp_path, boot="another-boot")
    p = sleeper()
    _run_file(folder, p, session="s1", boot="another-boot")
    [reaped] = RunRegistry(tmp_path, host=HOST).reap()
    assert reaped.killed == 0 and "machine restarted" in reaped.reason
    assert p.poll() is None


def _session(session_id: str) -> Session:
    return Session(id=session_id, backend="codex", created_at="2026-01-01T00:00:00Z",
                   last_used="2026-01-01T00:00:00Z", working_dir="/tmp")


class _Log:
    def __init__(self) -> None:
        self.lines: list[tuple[str, dict]] = []

    def warning(self, event: str, **fields) -> None:
        self.lines.append((event, fields))

    error = warning


@pytest.mark.anyio
async def test_start_up_marks_interrupted_sessions_error_and_clears_the_records(
    tmp_path, sleeper
):
    """reap_interrupted_runs kills the survivor, marks its session `error` with the reason,
    skips a session that was deleted meanwhile, and drops the dead server's folder."""
    folder = _dead_server(tmp_path)
    p, q = sleeper(), sleeper()
    _run_file(folder, p, session="s1")
    _run_file(folder, q, session="gone")
    store = FakeSessionStore()
    await store.create(_session("s1"))
    runner = FakeBackendRunner()
    runner.groups = ProcessGroups(RunRegistry(tmp_path, host=HOST))  # type: ignore[attr-defined]
    services = bootstrap(Config(), runner=runner, store=store, clock=FakeClock(), ids=FakeIds())
    log = _Log()
    assert await reap_interrupted_runs(services, log) == 2
    session = await store.get("s1")
    assert session.status == "error" and session.error and "interrupted" in session.error
    assert p.wait(30) == -signal.SIGKILL and q.wait(30) == -signal.SIGKILL
    assert not folder.exists()
    assert len(log.lines) == 2


class _BrokenStore(FakeSessionStore):
    async def update(self, session_id, change):
        raise SessionStoreUnavailable("save the session", "the disk is full (ENOSPC)")


@pytest.mark.anyio
async def test_a_store_that_cannot_be_written_keeps_the_records_for_next_time(
    tmp_path, sleeper
):
    """When the session cannot be marked (disk full), the survivor is still killed, the
    failure is logged, and the dead server's records stay for the next start."""
    folder = _dead_server(tmp_path)
    p = sleeper()
    _run_file(folder, p, session="s1")
    store = _BrokenStore()
    await store.create(_session("s1"))
    runner = FakeBackendRunner()
    runner.groups = ProcessGroups(RunRegistry(tmp_path, host=HOST))  # type: ignore[attr-defined]
    services = bootstrap(Config(), runner=runner, store=store, clock=FakeClock(), ids=FakeIds())
    log = _Log()
    assert await reap_interrupted_runs(services, log) == 1
    assert p.wait(30) == -signal.SIGKILL
    assert folder.exists()
    assert any("cannot mark" in event for event, _ in log.lines)
