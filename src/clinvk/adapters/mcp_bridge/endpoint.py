"""The bridge's MCP endpoint (streamable HTTP), one path per run: `initialize`,
`tools/list` (exactly the run's tools) and `tools/call` (held open until the client's
result comes; as an SSE response with heartbeats when the CLI accepts one, so no idle
timeout on its side cuts a long wait). GET is 405 (nothing is ever sent unasked), DELETE
ends nothing (the run owns the channel)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import msgspec
from starlette.types import Receive, Scope, Send

from clinvk import __version__
from clinvk.adapters.mcp import protocol as p
from clinvk.adapters.mcp_bridge.channel import BridgeChannel, ClosedChannel

#: Largest JSON-RPC message taken (tool names and arguments are small).
MAX_BODY = 4 * 1024 * 1024
SERVER_INFO = {"name": "clinvk-client-tools", "version": __version__}
_SSE_START = {"type": "http.response.start", "status": 200, "headers": [
    (b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]}


def tool_listing(channel: BridgeChannel) -> dict[str, Any]:
    """The `tools/list` result: the run's tools, marked read-only so a CLI may call several
    at once (claude runs only such tools concurrently)."""
    return {"tools": [
        {"name": t.name, "description": t.description, "inputSchema": t.parameters,
         "annotations": {"readOnlyHint": True}}
        for t in channel.tools.values()
    ]}


class BridgeEndpoint:
    """ASGI app serving `/mcp/<token>` for each open channel."""

    def __init__(self, lookup: Callable[[str], BridgeChannel | None], *,
                 heartbeat_secs: float = 15) -> None:
        self._lookup = lookup
        # 0 (or less) turns heartbeats off, as on the public server's streams.
        self._heartbeat = heartbeat_secs if heartbeat_secs > 0 else math.inf

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        channel = self._lookup(path.removeprefix("/mcp/")) if path.startswith("/mcp/") else None
        if channel is None or channel.closed:
            return await _plain(send, 404, b"")
        method = scope["method"]
        if method == "DELETE":
            return await _plain(send, 200, b"")
        if method != "POST":
            return await _plain(send, 405, b"", [(b"allow", b"POST, DELETE")])
        body = await _body(receive)
        if body is None:
            return await _json(send, p.error_response(None, p.INVALID_REQUEST, "body too large"),
                               413)
        try:
            message = p.message_decoder.decode(body)
        except msgspec.DecodeError:
            return await _json(send, p.error_response(None, p.PARSE_ERROR, "parse error"), 400)
        if message.method is None or message.is_notification:
            return await _plain(send, 202, b"")
        accept = dict(scope["headers"]).get(b"accept", b"").decode("latin-1")
        if message.method == "tools/call":
            return await self._call(channel, message, send, "text/event-stream" in accept)
        await _json(send, _answer(channel, message))

    async def _call(self, channel: BridgeChannel, message: p.Message, send: Send,
                    sse: bool) -> None:
        request_id = message.id if message.id is not msgspec.UNSET else None
        try:
            params = msgspec.convert(message.params or {}, p.ToolCallParams)
        except msgspec.ValidationError as exc:
            return await _json(send, p.error_response(request_id, p.INVALID_PARAMS, str(exc)))
        if params.name not in channel.tools:
            return await _json(send, p.error_response(
                request_id, p.INVALID_PARAMS, f"unknown tool: {params.name}"))

        started = False

        async def beat() -> None:
            # The SSE headers wait for the first heartbeat (or the result): a call answered
            # sooner costs the CLI no wake-up for them while the answer is on its way out.
            nonlocal started
            if not started:
                await send(_SSE_START)
                started = True
            await send({"type": "http.response.body", "body": b": ping\n\n", "more_body": True})

        try:
            outcome = await channel.call(params.name, params.arguments or {},
                                         idle=beat if sse else None,
                                         idle_secs=self._heartbeat if sse else math.inf)
        except ClosedChannel:
            response = p.error_response(request_id, p.INTERNAL_ERROR, "the run has ended")
        else:
            response = p.Response(jsonrpc=p.JSONRPC, id=request_id, result={
                "content": [{"type": "text", "text": outcome.output}],
                "isError": outcome.is_error,
            })
        if not sse:
            return await _json(send, response)
        if not started:
            await send(_SSE_START)
        data = b"event: message\ndata: " + p.encode(response) + b"\n\n"
        await send({"type": "http.response.body", "body": data, "more_body": False})


def _answer(channel: BridgeChannel, message: p.Message) -> p.Response:
    request_id = message.id if message.id is not msgspec.UNSET else None
    if message.method == "initialize":
        params = msgspec.convert(message.params or {}, p.InitializeParams)
        return p.Response(jsonrpc=p.JSONRPC, id=request_id, result={
            "protocolVersion": p.negotiate(params.protocolVersion),
            "capabilities": {"tools": {"listChanged": False}},
            "serverInfo": SERVER_INFO,
        })
    if message.method == "tools/list":
        return p.Response(jsonrpc=p.JSONRPC, id=request_id, result=tool_listing(channel))
    if message.method == "ping":
        return p.Response(jsonrpc=p.JSONRPC, id=request_id, result={})
    return p.error_response(request_id, p.METHOD_NOT_FOUND, f"method not found: {message.method}")


async def _body(receive: Receive) -> bytes | None:
    chunks, size = [], 0
    while True:
        event = await receive()
        if event["type"] != "http.request":
            return b"".join(chunks)
        chunk = event.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            return None
        chunks.append(chunk)
        if not event.get("more_body"):
            return b"".join(chunks)


async def _plain(send: Send, status: int, body: bytes,
                 headers: list[tuple[bytes, bytes]] | None = None) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers or []})
    await send({"type": "http.response.body", "body": body})


async def _json(send: Send, value: msgspec.Struct, status: int = 200) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": p.encode(value)})
