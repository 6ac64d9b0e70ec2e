"""Ports of portable CLI sessions: where a CLI's session files are read and written, and
where they are kept between turns."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from clinvk.domain.models import RunSpec

if TYPE_CHECKING:
    from clinvk.domain.cli_state import CliState


class CliStateFiles(Protocol):
    """The CLIs' own session files on this machine."""

    async def capture_cli_state(self, spec: RunSpec, cli_session_id: str) -> CliState | None:
        """The files the run's CLI keeps session `cli_session_id` in (None: none found)."""
        ...

    async def restore_cli_state(self, spec: RunSpec, state: CliState) -> None:
        """Write `state`'s files where the run's CLI will look for them."""
        ...


class CliStateStore(Protocol):
    """Keeps the latest CLI session files with the sessions (shared by replicas)."""

    async def save_cli_state(self, state: CliState) -> int:
        """Store a new version of a CLI session's files; return its version number."""
        ...

    async def load_cli_state(self, backend: str, cli_session_id: str) -> CliState | None:
        """The latest stored files of a CLI session, or None."""
        ...
