"""Per-client-IP token bucket: `rate_limit_rps` tokens a second, at most `rate_limit_burst`.

A refused request gets 429 with Retry-After; every limited response carries
X-RateLimit-Limit (the burst), X-RateLimit-Remaining (whole tokens left) and
X-RateLimit-Reset (seconds until the bucket is full again).

Memory stays bounded without a background task: buckets are kept in least-recently-used
order, and each request drops the stale ones at the old end. A bucket is stale once it has
been idle long enough to be full again (then it is the same as a new one, so dropping it
changes nothing) or for `rate_limit_cleanup_secs`, whichever is sooner; a hard cap on the
number of buckets covers a flood of distinct addresses inside that window.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import msgspec
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from clinvk.adapters.http.middleware.client_ip import ClientAddress
from clinvk.adapters.http.middleware.envelope import error_response

#: Most buckets kept at once (about 100 bytes each).
MAX_BUCKETS = 100_000


class Decision(msgspec.Struct, frozen=True, kw_only=True):
    """The outcome of taking one token."""

    allowed: bool
    limit: int
    remaining: int
    #: Seconds until one token is back (0 when allowed).
    retry_after: float
    #: Seconds until the bucket is full.
    reset_after: float


class TokenBuckets:
    """One token bucket per key, created full."""

    def __init__(
        self,
        *,
        rate: float,
        burst: int,
        idle_secs: float,
        clock: Callable[[], float] = time.monotonic,
        max_buckets: int = MAX_BUCKETS,
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("server.rate_limit_rps must be > 0 and rate_limit_burst >= 1")
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self.max_buckets = max_buckets
        refill = burst / rate
        self.stale_after = min(idle_secs, refill) if idle_secs > 0 else refill
        # key -> (tokens, time of last use); insertion order = least recently used first.
        self._buckets: dict[str, tuple[float, float]] = {}

    def __len__(self) -> int:
        return len(self._buckets)

    def _sweep(self, now: float) -> None:
        buckets = self._buckets
        while buckets:
            key = next(iter(buckets))
            if now - buckets[key][1] < self.stale_after and len(buckets) < self.max_buckets:
                break
            del buckets[key]

    def take(self, key: str) -> Decision:
        """Take a token for `key` if one is there."""
        now = self.clock()
        self._sweep(now)
        tokens, last = self._buckets.pop(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate)
        allowed = tokens >= 1.0
        if allowed:
            tokens -= 1.0
        self._buckets[key] = (tokens, now)
        return Decision(
            allowed=allowed,
            limit=self.burst,
            remaining=int(tokens),
            retry_after=0.0 if allowed else (1.0 - tokens) / self.rate,
            reset_after=(self.burst - tokens) / self.rate,
        )


class RateLimitMiddleware:
    """Answer 429 in the path's dialect envelope once a client's bucket is empty.

    Every path is limited, `/health` included: it is the one path that needs no key, so it
    is the cheapest to flood (clinvoker limits it too).
    """

    def __init__(self, app: ASGIApp, *, buckets: TokenBuckets, client: ClientAddress) -> None:
        self.app = app
        self.buckets = buckets
        self.client = client

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        decision = self.buckets.take(self.client(scope))
        headers = {
            "X-RateLimit-Limit": str(decision.limit),
            "X-RateLimit-Remaining": str(decision.remaining),
            "X-RateLimit-Reset": str(math.ceil(decision.reset_after)),
        }
        if not decision.allowed:
            headers["Retry-After"] = str(max(1, math.ceil(decision.retry_after)))
            response = error_response(
                scope["path"], 429,
                f"rate limit exceeded: at most {self.buckets.rate:g} requests a second "
                f"(bursts of {decision.limit}); retry after {headers['Retry-After']} s",
                code="rate_limit_exceeded", headers=headers,
            )
            await response(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                response_headers = MutableHeaders(scope=message)
                for name, value in headers.items():
                    response_headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)
