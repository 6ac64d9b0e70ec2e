"""Port: where sessions are kept."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Protocol

from clinvk.domain.models import Session, SessionPage, SessionQuery


class SessionStore(Protocol):
    """Durable session records; every write is atomic and safe across processes."""

    async def create(self, session: Session) -> None:
        """Store a new session."""
        ...

    async def get(self, session_id: str) -> Session:
        """Return one session or raise SessionNotFound."""
        ...

    async def update(self, session_id: str, change: Callable[[Session], Session]) -> Session:
        """Apply `change` to the stored session under a lock; return the new value."""
        ...

    async def delete(self, session_id: str) -> None:
        """Remove a session or raise SessionNotFound."""
        ...

    async def ids_with_prefix(self, prefix: str, limit: int) -> list[str]:
        """Up to `limit` stored session ids that start with `prefix` (any order)."""
        ...

    async def list(self, query: SessionQuery) -> SessionPage:
        """Sessions matching the query, most recently used first."""
        ...

    async def purge(self, last_used_before: datetime) -> int:
        """Delete sessions not used since the given time; return how many."""
        ...

    async def count(self) -> int:
        """Number of stored sessions; raises OSError-derived errors when unavailable."""
        ...

    def hold(self, session_id: str) -> AbstractAsyncContextManager[None]:
        """Hold a session for one run, across processes and replicas: entering raises
        SessionBusy while another holder has it; leaving (or the holder dying) frees it."""
        ...
