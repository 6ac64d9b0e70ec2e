"""The health report (`GET /health`, and the MCP `clinvk_health` tool): its wire types and
how it is computed from the services."""

from __future__ import annotations

import os
import socket
import time

import msgspec

from clinvk import __version__
from clinvk.domain.errors import SessionStoreUnavailable
from clinvk.domain.services import Services


class WarmPoolHealth(msgspec.Struct, kw_only=True):
    size: int
    ready: int
    hits: int


class BackendHealth(msgspec.Struct, kw_only=True, omit_defaults=True):
    name: str
    available: bool
    #: The CLI's executable and the version it reported at start-up (when known).
    path: str | None = None
    version: str | None = None
    warm_pool: WarmPoolHealth | None = None


class StoreHealth(msgspec.Struct, kw_only=True, omit_defaults=True):
    #: Whether the store answered (for PostgreSQL: the database is reachable).
    available: bool
    session_count: int
    #: `file` or `postgresql` (absent for a store that does not say).
    kind: str | None = None
    #: Milliseconds counting the sessions took (one round trip to PostgreSQL).
    latency_ms: float | None = None


class Health(msgspec.Struct, kw_only=True, omit_defaults=True):
    status: str
    version: str
    #: Which replica answered (server.replica_id, or host name and pid).
    replica: str
    uptime: str
    uptime_millis: int
    backends: list[BackendHealth]
    session_store: StoreHealth
    #: Present (true) only under `clinvk serve --demo`: answers are canned, not a model's.
    demo: bool = False


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m}m{s}s" if h else (f"{m}m{s}s" if m else f"{s}s")


class HealthReport:
    """Computes the health body; uptime counts from when this object was made."""

    def __init__(self, services: Services, *, demo: bool = False) -> None:
        self.services = services
        self.demo = demo
        self.started = time.monotonic()
        self.replica = (
            services.config.server.replica_id or f"{socket.gethostname()}-{os.getpid()}"
        )

    async def __call__(self) -> Health:
        """The current health: ok, degraded (a backend unavailable) or unhealthy (no store)."""
        backends = [
            BackendHealth(
                name=b.name,
                available=b.available,
                path=b.path,
                version=b.version,
                warm_pool=WarmPoolHealth(
                    size=b.warm_pool_size, ready=b.warm_pool_ready, hits=b.warm_pool_hits
                )
                if b.warm_pool_size
                else None,
            )
            for b in self.services.backends()
        ]
        kind = getattr(self.services.store, "kind", None)
        asked = time.perf_counter()
        try:
            count = await self.services.sessions.count()
            latency = round((time.perf_counter() - asked) * 1000, 3)
            store = StoreHealth(
                available=True, session_count=count, kind=kind, latency_ms=latency
            )
        except (OSError, SessionStoreUnavailable):
            store = StoreHealth(available=False, session_count=0, kind=kind)
        if not store.available:
            status = "unhealthy"
        elif all(b.available for b in backends):
            status = "ok"
        else:
            status = "degraded"
        up = time.monotonic() - self.started
        return Health(
            status=status,
            version=__version__,
            replica=self.replica,
            uptime=_duration(up),
            uptime_millis=int(up * 1000),
            backends=backends,
            session_store=store,
            demo=self.demo,
        )
