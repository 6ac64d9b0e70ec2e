"""HTTP-only concerns as plain ASGI middleware, one small module each.

The order, outermost first (each sees what the ones inside it answer):

    request_context  request id, traceparent, the one summary log line
    metrics          requests and latency by route template and status
    cors             preflight and CORS headers, also on 401/429 answers
    timeouts         the whole request's deadline
    rate_limit       per-client-IP token bucket (before auth: key guessing is limited too)
    auth             API keys
    body             body size limit and read deadline, before any handler runs
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.middleware import Middleware
from starlette.routing import BaseRoute

from clinvk.adapters.http.middleware.auth import ApiKeyMiddleware
from clinvk.adapters.http.middleware.body import RequestBodyMiddleware
from clinvk.adapters.http.middleware.client_ip import ClientAddress
from clinvk.adapters.http.middleware.cors import cors_middleware
from clinvk.adapters.http.middleware.metrics import MetricsMiddleware, RequestObserver
from clinvk.adapters.http.middleware.rate_limit import RateLimitMiddleware, TokenBuckets
from clinvk.adapters.http.middleware.request_context import RequestContextMiddleware
from clinvk.adapters.http.middleware.timeouts import RequestTimeoutMiddleware
from clinvk.domain.config import ServerConfig

__all__ = ["RequestObserver", "middleware_stack"]


def middleware_stack(
    server: ServerConfig,
    *,
    routes: Sequence[BaseRoute],
    api_keys: Sequence[str] = (),
    metrics: RequestObserver | None = None,
) -> list[Middleware]:
    """Every middleware for these settings, outermost first."""
    client = ClientAddress(server.trusted_proxies)
    stack = [Middleware(RequestContextMiddleware, routes=routes, client=client)]
    if metrics is not None:
        stack.append(Middleware(MetricsMiddleware, observer=metrics, routes=routes))
    stack.append(cors_middleware(server))
    stack.append(
        Middleware(
            RequestTimeoutMiddleware,
            request_timeout=server.request_timeout_secs,
            write_timeout=server.write_timeout_secs,
        )
    )
    if server.rate_limit_enabled:
        buckets = TokenBuckets(
            rate=server.rate_limit_rps,
            burst=server.rate_limit_burst,
            idle_secs=server.rate_limit_cleanup_secs,
        )
        stack.append(Middleware(RateLimitMiddleware, buckets=buckets, client=client))
    if api_keys:
        stack.append(Middleware(ApiKeyMiddleware, keys=list(api_keys)))
    stack.append(
        Middleware(
            RequestBodyMiddleware,
            max_bytes=server.max_request_body_bytes,
            read_timeout=server.read_timeout_secs,
        )
    )
    return stack
