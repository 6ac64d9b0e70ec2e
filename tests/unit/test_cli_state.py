"""Portable CLI sessions: capturing and restoring a CLI's own session files, and the runner
decorator that does both around a run."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from clinvk.adapters.backends import cli_state
from clinvk.domain.cli_state import CliFile, CliState, PortableCliSessions
from clinvk.domain.models import RunSpec
from tests.fakes import FakeBackendRunner

SID = "0a1b2c3d-4e5f-6789-abcd-ef0123456789"


def test_capture_takes_the_matching_files_that_name_the_session(tmp_path: Path) -> None:
    """Files matching a pattern are taken only when they hold the session id; an id that
    could act as a glob is not looked for."""
    chats = tmp_path / "tmp" / "proj" / "chats"
    chats.mkdir(parents=True)
    (chats / f"session-1-{SID[:8]}.jsonl").write_bytes(f'{{"sessionId":"{SID}"}}'.encode())
    (chats / f"session-2-{SID[:8]}.jsonl").write_bytes(b'{"sessionId":"another"}')
    patterns = (f"tmp/*/chats/session-*-{SID[:8]}.jsonl",)
    state = cli_state.capture("gemini", str(tmp_path), patterns, SID)
    assert state is not None and [f.path for f in state.files] == [
        f"tmp/proj/chats/session-1-{SID[:8]}.jsonl"
    ]
    assert cli_state.capture("gemini", str(tmp_path), ("nothing/*",), SID) is None
    assert cli_state.capture("gemini", str(tmp_path), ("**/*",), "*") is None


def test_restore_writes_missing_or_older_files_inside_the_root(tmp_path: Path) -> None:
    """Restoring writes files that are missing or older, leaves equal and newer ones alone,
    and never writes outside the state folder."""
    root = tmp_path / "home"
    same = root / "projects" / "-w" / "same.jsonl"
    same.parent.mkdir(parents=True)
    same.write_bytes(b"equal")
    state = CliState(backend="claude", cli_session_id=SID, files=[
        CliFile(path=f"projects/-w/{SID}.jsonl", data=b"turn 1\nturn 2\n"),
        CliFile(path="projects/-w/same.jsonl", data=b"equal"),
        CliFile(path="../escape.jsonl", data=b"x"),
        CliFile(path="/etc/escape.jsonl", data=b"x"),
    ])
    assert cli_state.restore(str(root), state) == 1
    assert (root / "projects" / "-w" / f"{SID}.jsonl").read_bytes() == b"turn 1\nturn 2\n"
    assert not (tmp_path / "escape.jsonl").exists()
    older = msgspec.structs.replace(state, files=[state.files[0]])
    (root / "projects" / "-w" / f"{SID}.jsonl").write_bytes(b"turn 1\n")
    assert cli_state.restore(str(root), older) == 1
    assert (root / "projects" / "-w" / f"{SID}.jsonl").read_bytes() == b"turn 1\nturn 2\n"
    (root / "projects" / "-w" / f"{SID}.jsonl").write_bytes(b"turn 1\nturn 2\nturn 3\n")
    assert cli_state.restore(str(root), older) == 0  # the local file is newer: kept
    assert (root / "projects" / "-w" / f"{SID}.jsonl").read_bytes().endswith(b"turn 3\n")


class _Files:
    """CliStateFiles in memory: what was captured and restored."""

    def __init__(self) -> None:
        self.restored: list[CliState] = []

    async def capture_cli_state(self, spec: RunSpec, cli_session_id: str) -> CliState | None:
        return CliState(backend=spec.backend, cli_session_id=cli_session_id,
                        files=[CliFile(path="f", data=spec.prompt.encode())])

    async def restore_cli_state(self, spec: RunSpec, state: CliState) -> None:
        self.restored.append(state)


class _Store:
    def __init__(self) -> None:
        self.saved: list[CliState] = []

    async def save_cli_state(self, state: CliState) -> int:
        self.saved.append(state)
        return len(self.saved)

    async def load_cli_state(self, backend: str, cli_session_id: str) -> CliState | None:
        found = [s for s in self.saved if (s.backend, s.cli_session_id) == (backend, cli_session_id)]
        return found[-1] if found else None


@pytest.mark.anyio
async def test_the_decorator_captures_after_a_turn_and_restores_before_a_resume() -> None:
    """A turn that keeps a session has its CLI files saved; a resume gets the newest saved
    copy put back first; an ephemeral turn saves nothing."""
    runner, files, store = FakeBackendRunner(), _Files(), _Store()
    portable = PortableCliSessions(runner, files=files, store=store)
    first = await portable.run(RunSpec(backend="claude", prompt="one", workdir="/w"))
    cli_id = first.backend_session_id
    assert cli_id and [s.files[0].data for s in store.saved] == [b"one"]
    assert files.restored == []
    await portable.run(RunSpec(backend="claude", prompt="two", workdir="/w", resume_id=cli_id))
    assert files.restored == [store.saved[0]]
    await portable.run(RunSpec(backend="claude", prompt="three", workdir="/w", ephemeral=True))
    assert len(store.saved) == 2
