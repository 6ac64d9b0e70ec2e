"""The session service: list, inspect, delete and expire stored sessions."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta

from msgspec.structs import replace

from clinvk.domain.config import SessionConfig
from clinvk.domain.errors import InvalidRequest, SessionNotFound
from clinvk.domain.models import MAX_SESSION_PAGE, Session, SessionPage, SessionQuery
from clinvk.ports import Clock, SessionStore

MAX_PAGE = MAX_SESSION_PAGE


class SessionService:
    """Read and manage sessions; running turns is the prompt service's job."""

    def __init__(
        self,
        *,
        store: SessionStore,
        clock: Clock,
        config: SessionConfig,
        on_delete: Callable[[str], Awaitable[None]] | None = None,
    ) -> None:
        """`on_delete(backend_session_id)`: ends what the runner keeps for a deleted
        session (a CLI process waiting for its next turn)."""
        self._store = store
        self._clock = clock
        self._config = config
        self._on_delete = on_delete

    async def list(self, query: SessionQuery) -> SessionPage:
        """One page of sessions matching the query, most recently used first."""
        if not 0 <= query.limit <= MAX_PAGE:
            raise InvalidRequest(f"limit must be between 0 and {MAX_PAGE}", field="limit")
        if query.offset < 0:
            raise InvalidRequest("offset must not be negative", field="offset")
        if query.limit == 0:
            query = replace(query, limit=MAX_PAGE)
        return await self._store.list(query)

    async def resolve(self, id_or_prefix: str) -> str:
        """The full id of the session named by its id or a unique prefix of it.

        SessionNotFound when nothing matches; InvalidRequest when the prefix is ambiguous.
        """
        try:
            return (await self._store.get(id_or_prefix)).id
        except SessionNotFound:
            matches = await self._store.ids_with_prefix(id_or_prefix, 2)
            if len(matches) == 1:
                return matches[0]
            if matches:
                raise InvalidRequest(
                    f"session id prefix {id_or_prefix!r} matches more than one session; "
                    "send more of the id",
                    field="id",
                ) from None
            raise

    async def get(self, id_or_prefix: str) -> Session:
        """One session, by id or unique id prefix; SessionNotFound when unknown."""
        return await self._store.get(await self.resolve(id_or_prefix))

    async def delete(self, id_or_prefix: str) -> str:
        """Delete one session (by id or unique id prefix); return its full id."""
        session = await self._store.get(await self.resolve(id_or_prefix))
        await self._store.delete(session.id)
        if self._on_delete is not None and session.backend_session_id:
            await self._on_delete(session.backend_session_id)
        return session.id

    async def purge_expired(self) -> int:
        """Delete sessions unused for `retention_days`; 0 days keeps them forever."""
        if self._config.retention_days <= 0:
            return 0
        cutoff = self._clock.now() - timedelta(days=self._config.retention_days)
        return await self._store.purge(cutoff)

    async def mark_interrupted(self, session_id: str, reason: str) -> bool:
        """Mark a session whose run was cut off (the server died) as `error` with `reason`;
        False when the session no longer exists."""
        try:
            await self._store.update(
                session_id, lambda s: replace(s, status="error", error=reason)
            )
        except SessionNotFound:
            return False
        return True

    async def count(self) -> int:
        """How many sessions are stored (raises when the store is unavailable)."""
        return await self._store.count()
