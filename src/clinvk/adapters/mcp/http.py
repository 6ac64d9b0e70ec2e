"""MCP over HTTP (streamable HTTP), served at `/mcp` by `clinvk serve` and `clinvk mcp`.

POST one JSON-RPC message. A request is answered with one JSON body, or with an SSE
stream (its notifications, then the response) when the client accepts
`text/event-stream` and asked for streaming (`output_format: stream-json`, as clinvoker
gates it, or a progressToken). Streaming asked for without that Accept is clinvoker's
JSON-RPC error. A notification or a client's response gets 204 and no body, as in
clinvoker. `initialize` starts a session (`Mcp-Session-Id`); a client that never
initializes is served statelessly, as clinvoker serves every client. DELETE ends a
session, cancelling what it still runs; GET is 405 (this server sends nothing unasked).
A client that disconnects cancels its request: the CLI's process group is ended.
"""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict
from collections.abc import Callable

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from clinvk.adapters.http.streaming import (
    ClientDisconnected,
    Emit,
    EventStreamResponse,
    until_disconnect,
)
from clinvk.adapters.mcp import protocol as p
from clinvk.adapters.mcp.server import McpServer, McpSession
from clinvk.adapters.mcp.tools import wants_stream

SESSION_HEADER = "Mcp-Session-Id"
VERSION_HEADER = "MCP-Protocol-Version"
SSE = "text/event-stream"


def _json(body: msgspec.Struct, status: int = 200, headers: dict[str, str] | None = None
          ) -> Response:
    return Response(p.encode(body), status, headers=headers, media_type="application/json")


def _error(status: int, code: int, message: str) -> Response:
    return _json(p.error_response(None, code, message), status)


def accepts_event_stream(accept: str) -> bool:
    """Whether an Accept header lists text/event-stream (parameters ignored)."""
    return any(part.split(";", 1)[0].strip().lower() == SSE for part in accept.split(","))


def _sse(message: msgspec.Struct) -> bytes:
    return b"event: message\ndata: " + p.encode(message) + b"\n\n"


class SessionTable:
    """The sessions of one endpoint: bounded in number, dropped after `idle_secs` unused."""

    def __init__(self, *, limit: int = 1000, idle_secs: float = 3600) -> None:
        self.limit = limit
        self.idle_secs = idle_secs
        self._sessions: OrderedDict[str, McpSession] = OrderedDict()

    def create(self) -> McpSession:
        self._expire()
        while len(self._sessions) >= self.limit:
            _, oldest = self._sessions.popitem(last=False)
            oldest.cancel_all()
        session = McpSession(id=secrets.token_urlsafe(24))
        assert session.id is not None
        self._sessions[session.id] = session
        return session

    def get(self, session_id: str) -> McpSession | None:
        self._expire()
        session = self._sessions.get(session_id)
        if session is not None:
            self._sessions.move_to_end(session_id)
        return session

    def end(self, session_id: str) -> bool:
        session = self._sessions.pop(session_id, None)
        if session is None:
            return False
        session.cancel_all()
        return True

    def _expire(self) -> None:
        cutoff = time.monotonic() - self.idle_secs
        for sid, session in list(self._sessions.items()):
            if session.last_used < cutoff and not session.running:
                del self._sessions[sid]


class McpEndpoint:
    """The ASGI app of the MCP endpoint (mounted at its path by the composition root)."""

    def __init__(
        self,
        server: McpServer,
        *,
        heartbeat_secs: float | None = None,
        origin_allowed: Callable[[str], bool] | None = None,
        sessions: SessionTable | None = None,
    ) -> None:
        self.server = server
        self.heartbeat_secs = heartbeat_secs
        self.origin_allowed = origin_allowed
        self.sessions = sessions if sessions is not None else SessionTable()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        response = await self._dispatch(request)
        await response(scope, receive, send)

    async def _dispatch(self, request: Request):
        origin = request.headers.get("origin")
        if origin and self.origin_allowed is not None and not self.origin_allowed(origin):
            # DNS rebinding: a page elsewhere must not reach CLIs on this machine.
            return _error(403, p.INVALID_REQUEST, f"origin not allowed: {origin}")
        version = request.headers.get(VERSION_HEADER)
        if version and version not in p.PROTOCOL_VERSIONS:
            return _error(400, p.INVALID_REQUEST, f"unsupported {VERSION_HEADER}: {version}; "
                          f"supported: {', '.join(p.PROTOCOL_VERSIONS)}")
        if request.method == "POST":
            return await self._post(request)
        if request.method == "DELETE":
            return self._delete(request)
        return Response(status_code=405, headers={"Allow": "POST, DELETE"})

    def _delete(self, request: Request) -> Response:
        session_id = request.headers.get(SESSION_HEADER)
        if not session_id:
            return _error(400, p.INVALID_REQUEST, f"DELETE needs an {SESSION_HEADER} header")
        if not self.sessions.end(session_id):
            return _error(404, p.INVALID_REQUEST, "session not found")
        return Response(status_code=204)

    async def _post(self, request: Request):
        session_id = request.headers.get(SESSION_HEADER)
        session: McpSession | None = None
        if session_id:
            session = self.sessions.get(session_id)
            if session is None:
                # The specification's signal to start a new session with initialize.
                return _error(404, p.INVALID_REQUEST, "session not found")
        body = await request.body()
        try:
            message = p.message_decoder.decode(body)
        except msgspec.DecodeError:
            return _error(400, p.PARSE_ERROR, "parse error")
        except msgspec.ValidationError:
            return _error(400, p.INVALID_REQUEST, "expected one JSON-RPC message object")
        if message.jsonrpc != p.JSONRPC:
            return _error(400, p.INVALID_REQUEST, "invalid JSON-RPC version")
        headers: dict[str, str] = {}
        if message.method == "initialize" and session is None and not message.is_notification:
            session = self.sessions.create()
            assert session.id is not None
            headers[SESSION_HEADER] = session.id
        if session is None:
            session = McpSession()  # stateless, as clinvoker serves every client
        if message.is_notification or message.method is None:
            await self.server.handle(message, session, None)
            return Response(status_code=204)
        sse = accepts_event_stream(request.headers.get("accept", ""))
        params = message.params if isinstance(message.params, dict) else {}
        streaming = message.method == "tools/call" and wants_stream(
            params.get("name", ""), params.get("arguments"))
        if streaming and not sse:
            return _json(p.error_response(message.id, p.INVALID_PARAMS,  # type: ignore[arg-type]
                                          "streaming requires Accept: text/event-stream"))
        meta = params.get("_meta")
        progress = isinstance(meta, dict) and meta.get("progressToken") is not None
        if message.method == "tools/call" and sse and (streaming or progress):
            return self._stream(message, session, headers)
        try:
            response = await until_disconnect(
                request, lambda: self.server.handle(message, session, None))
        except ClientDisconnected:
            return Response(status_code=499)
        if response is None:
            return Response(status_code=204, headers=headers)  # cancelled by the client
        return _json(response, headers=headers)

    def _stream(self, message: p.Message, session: McpSession, headers: dict[str, str]
                ) -> EventStreamResponse:
        async def produce(emit: Emit, response: EventStreamResponse) -> None:
            async def notify(notification: p.Notification) -> None:
                await emit(_sse(notification))

            answer = await self.server.handle(message, session, notify)
            if answer is not None:
                await emit(_sse(answer))

        return EventStreamResponse(
            produce,
            media_type=SSE,
            heartbeat=b": keep-alive\n\n",
            heartbeat_secs=self.heartbeat_secs,
            headers=headers,
        )
