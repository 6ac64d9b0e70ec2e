"""The session service: list, inspect, delete and expire stored sessions."""

from __future__ import annotations

from datetime import timedelta

from clinvk.domain.config import SessionConfig
from clinvk.domain.errors import InvalidRequest
from clinvk.domain.models import Session, SessionPage, SessionQuery
from clinvk.ports import Clock, SessionStore

MAX_PAGE = 1000


class SessionService:
    """Read and manage sessions; running turns is the prompt service's job."""

    def __init__(self, *, store: SessionStore, clock: Clock, config: SessionConfig) -> None:
        self._store = store
        self._clock = clock
        self._config = config

    async def list(self, query: SessionQuery) -> SessionPage:
        """One page of sessions matching the query, most recently used first."""
        if not 0 <= query.limit <= MAX_PAGE:
            raise InvalidRequest(f"limit must be between 0 and {MAX_PAGE}", field="limit")
        if query.offset < 0:
            raise InvalidRequest("offset must not be negative", field="offset")
        return await self._store.list(query)

    async def get(self, session_id: str) -> Session:
        """One session; SessionNotFound when unknown."""
        return await self._store.get(session_id)

    async def delete(self, session_id: str) -> None:
        """Delete one session; SessionNotFound when unknown."""
        await self._store.delete(session_id)

    async def purge_expired(self) -> int:
        """Delete sessions unused for `retention_days`; 0 days keeps them forever."""
        if self._config.retention_days <= 0:
            return 0
        cutoff = self._clock.now() - timedelta(days=self._config.retention_days)
        return await self._store.purge(cutoff)

    async def count(self) -> int:
        """How many sessions are stored (raises when the store is unavailable)."""
        return await self._store.count()
