"""The health report (`GET /health`, and the MCP `clinvk_health` tool): its wire types and
how it is computed from the services."""

from __future__ import annotations

import time

import msgspec

from clinvk import __version__
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


class StoreHealth(msgspec.Struct, kw_only=True):
    available: bool
    session_count: int


class Health(msgspec.Struct, kw_only=True, omit_defaults=True):
    status: str
    version: str
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
        try:
            count = await self.services.sessions.count()
            store = StoreHealth(available=True, session_count=count)
        except OSError:
            store = StoreHealth(available=False, session_count=0)
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
            uptime=_duration(up),
            uptime_millis=int(up * 1000),
            backends=backends,
            session_store=store,
            demo=self.demo,
        )
