"""Portable CLI sessions: a CLI's own files for a session travel with the session.

A resume asks the CLI to reopen its session from the files it wrote in its home (claude's
transcript, codex's rollout, gemini's chat). Those live on the replica that ran the turn.
`PortableCliSessions` captures them after every turn into the session store and, before a
resume, puts the stored copy back where the CLI looks, so the next turn can run on any
replica (or after a replica's home was wiped).
"""

from __future__ import annotations

import msgspec

from clinvk.domain.models import RunResult, RunSpec
from clinvk.domain.runner_decorator import RunnerDecorator
from clinvk.ports import BackendRunner, EventSink
from clinvk.ports.cli_state import CliStateFiles, CliStateStore


class CliFile(msgspec.Struct, frozen=True, kw_only=True):
    """One file a CLI keeps a session in, by its path inside the CLI's state folder."""

    path: str
    data: bytes


class CliState(msgspec.Struct, frozen=True, kw_only=True):
    """A CLI session's own files as they were after a turn; `version` counts the saves."""

    backend: str
    cli_session_id: str
    files: list[CliFile]
    version: int = 0


class PortableCliSessions(RunnerDecorator):
    """BackendRunner decorator: restore a CLI session's files before its resume, capture
    them after each turn that kept a session."""

    def __init__(
        self, inner: BackendRunner, *, files: CliStateFiles, store: CliStateStore
    ) -> None:
        super().__init__(inner)
        self._files = files
        self._store = store

    async def run(self, spec: RunSpec, on_event: EventSink | None = None) -> RunResult:
        """Run `spec` with the CLI's session files in place, then keep them."""
        if spec.resume_id:
            state = await self._store.load_cli_state(spec.backend, spec.resume_id)
            if state is not None:
                await self._files.restore_cli_state(spec, state)
        result = await self.inner.run(spec, on_event)
        if not spec.ephemeral and result.backend_session_id:
            captured = await self._files.capture_cli_state(spec, result.backend_session_id)
            if captured is not None:
                await self._store.save_cli_state(captured)
        return result
