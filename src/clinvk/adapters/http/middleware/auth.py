"""API-key authentication: `Authorization: Bearer <key>` or `X-Api-Key: <key>`.

On only when keys are configured. Every path needs a key except `/health` (for probes)
and the static `/docs` page (a browser cannot add a header when it opens a page; the page
asks for the key and sends it with every request it makes, `/openapi.json` included).
Keys are compared as SHA-256 digests with `hmac.compare_digest`, against every key each
time, so neither a key's length nor which key matched shows in the timing.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

from starlette.types import ASGIApp, Receive, Scope, Send

from clinvk.adapters.http.middleware.envelope import error_response

PUBLIC_PATHS = frozenset({"/health"})
PUBLIC_PREFIXES = ("/docs",)


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).digest()


def is_public(path: str) -> bool:
    """Whether `path` is served without a key."""
    return path in PUBLIC_PATHS or any(
        path == p or path.startswith(p + "/") for p in PUBLIC_PREFIXES
    )


def presented_keys(scope: Scope) -> list[str]:
    """The keys a request presents (Bearer token and/or X-Api-Key)."""
    keys = []
    for name, raw in scope.get("headers", ()):
        # Byte for byte as sent: a UTF-8 key matches its configured text.
        value = raw.decode("utf-8", "surrogateescape").strip()
        if name == b"authorization":
            scheme, _, token = value.partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                keys.append(token.strip())
        elif name == b"x-api-key" and value:
            keys.append(value)
    return keys


class ApiKeyMiddleware:
    """Refuse requests without a valid API key with a 401 in the path's dialect envelope."""

    def __init__(self, app: ASGIApp, *, keys: Sequence[str]) -> None:
        self.app = app
        self._digests = [_digest(k) for k in keys]

    def valid(self, key: str) -> bool:
        """Whether `key` is one of the configured keys (constant time over all of them)."""
        given = _digest(key)
        match = False
        for known in self._digests:
            match |= hmac.compare_digest(given, known)
        return match

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self._digests or is_public(scope["path"]):
            await self.app(scope, receive, send)
            return
        presented = presented_keys(scope)
        ok = False
        for key in presented:
            ok |= self.valid(key)
        if ok:
            await self.app(scope, receive, send)
            return
        message = "invalid API key" if presented else (
            "missing API key: send `Authorization: Bearer <key>` or `X-Api-Key: <key>`"
        )
        response = error_response(
            scope["path"], 401, message, code="invalid_api_key",
            headers={"WWW-Authenticate": 'Bearer realm="clinvk"'},
        )
        await response(scope, receive, send)
