"""Request id, W3C trace context and the one summary log line of each request.

`X-Request-ID` is taken from the client when it is a sane token (else a new one is made)
and returned on the response; a valid `traceparent` is continued (same trace id, a new
span id for this server), otherwise a new trace starts; the response carries our
`traceparent`. Both ids are bound in structlog's context variables for the whole request,
so every line logged while it runs carries them, and the summary line is written when
the response is complete (route template, status, duration, client, backends run,
session id). Header values other than these ids are never logged: keys stay out of logs.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Callable, Sequence

import structlog
from starlette.datastructures import MutableHeaders
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from clinvk.adapters.http.middleware.routes import route_template
from clinvk.adapters.logging import get_logger, request_record

REQUEST_ID_HEADER = "X-Request-ID"
SESSION_HEADER = b"x-clinvk-session-id"
_REQUEST_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/+=@-]{0,127}$")
_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")

_log = get_logger("clinvk.http")


def request_id_from(value: str | None) -> str:
    """The client's request id when it is a safe token, else a fresh one."""
    if value and _REQUEST_ID.match(value):
        return value
    return secrets.token_hex(16)


class TraceContext:
    """The W3C trace context of one request, as seen by this server."""

    def __init__(self, header: str | None) -> None:
        self.parent_span_id: str | None = None
        self.flags = "00"
        self.trace_id = ""
        match = _TRACEPARENT.match((header or "").strip().lower())
        if match:
            version, trace_id, parent_id, flags = match.groups()
            if version != "ff" and trace_id != "0" * 32 and parent_id != "0" * 16:
                self.trace_id, self.parent_span_id, self.flags = trace_id, parent_id, flags
        if not self.trace_id:
            self.trace_id = secrets.token_hex(16)
        self.span_id = secrets.token_hex(8)

    @property
    def traceparent(self) -> str:
        """The header value naming this server's span."""
        return f"00-{self.trace_id}-{self.span_id}-{self.flags}"


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value.decode("latin-1")
    return None


class RequestContextMiddleware:
    """Bind request and trace ids for the request; write its summary line at the end."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        routes: Sequence[BaseRoute],
        client: Callable[[Scope], str],
    ) -> None:
        self.app = app
        self.routes = routes
        self.client = client

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        # Before the app runs: routing rewrites root_path in this very scope.
        route = route_template(self.routes, scope)
        request_id = request_id_from(_header(scope, b"x-request-id"))
        trace = TraceContext(_header(scope, b"traceparent"))
        status = 0
        session_id: str | None = None

        async def send_with_ids(message: Message) -> None:
            nonlocal status, session_id
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = MutableHeaders(scope=message)
                headers[REQUEST_ID_HEADER] = request_id
                headers["traceparent"] = trace.traceparent
                session_id = headers.get(SESSION_HEADER.decode()) or None
            await send(message)

        ids = {"request_id": request_id, "trace_id": trace.trace_id, "span_id": trace.span_id}
        with structlog.contextvars.bound_contextvars(**ids), request_record() as record:
            failure: BaseException | None = None
            try:
                await self.app(scope, receive, send_with_ids)
            except BaseException as exc:
                failure = exc
                status = status or 500
                raise
            finally:
                fields = {
                    "method": scope["method"],
                    "path": scope["path"],
                    "route": route,
                    "status": status,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 1),
                    "client": self.client(scope),
                    "parent_span_id": trace.parent_span_id,
                    "session_id": session_id,
                }
                backends = record.pop("backends", None)
                if backends:
                    fields["backend"] = ",".join(backends)
                fields.update(record)
                fields = {k: v for k, v in fields.items() if v is not None}
                if failure is not None and isinstance(failure, Exception):
                    _log.error("request", **fields, exc_info=failure)
                elif status >= 500:
                    _log.warning("request", **fields)
                else:
                    _log.info("request", **fields)
