"""CORS: Starlette's CORSMiddleware, configured from `server.cors_*`.

With no `cors_allowed_origins`, only pages served from this machine (localhost,
127.0.0.1, [::1], any port) may call the API from a browser. Any request header is
allowed (the OpenAI and Anthropic browser SDKs send many of their own); the headers a
client acts on are exposed.
"""

from __future__ import annotations

from typing import Any

from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware

from clinvk.domain.config import ServerConfig

LOCALHOST_ORIGINS = r"^https?://(localhost|127\.0\.0\.1|\[::1\])(:\d{1,5})?$"
EXPOSED = [
    "X-Request-ID",
    "X-Clinvk-Session-Id",
    "Retry-After",
    "X-RateLimit-Limit",
    "X-RateLimit-Remaining",
    "X-RateLimit-Reset",
    "traceparent",
    # A browser MCP client reads its session id from the initialize answer.
    "Mcp-Session-Id",
]


def cors_middleware(server: ServerConfig) -> Middleware:
    """The CORS layer for this server's settings."""
    options: dict[str, Any] = {
        "allow_methods": ["GET", "POST", "DELETE", "OPTIONS"],
        "allow_headers": ["*"],
        "expose_headers": EXPOSED,
        "allow_credentials": server.cors_allow_credentials,
        "max_age": server.cors_max_age,
    }
    if server.cors_allowed_origins:
        options["allow_origins"] = list(server.cors_allowed_origins)
    else:
        options["allow_origin_regex"] = LOCALHOST_ORIGINS
    return Middleware(CORSMiddleware, **options)
