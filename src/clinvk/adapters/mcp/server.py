"""The MCP dispatcher every transport shares: one decoded JSON-RPC message in, at most one
response out, notifications sent on the way through the transport's `notify`."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import msgspec

from clinvk import __version__
from clinvk.adapters.logging import get_logger
from clinvk.adapters.mcp import protocol as p
from clinvk.adapters.mcp.tools import Tool, ToolContext, Tools
from clinvk.domain.errors import ClinvkError

#: Sends one notification to the client of the request being handled.
Notify = Callable[[p.Notification], Awaitable[None]]

INSTRUCTIONS = (
    "clinvk runs the AI coding agent CLIs installed on this machine (claude, codex, gemini). "
    "Use clinvk_prompt to ask one of them (a second opinion, or a task handed over), "
    "clinvk_parallel / clinvk_compare to ask several at once, clinvk_chain to pipe one "
    "agent's answer into the next. Every run spends that agent's model tokens and may take "
    "minutes; clinvk_backends and clinvk_health are cheap."
)

_log = get_logger("clinvk.mcp")


@dataclass
class McpSession:
    """What one client connection (stdio) or one `Mcp-Session-Id` (HTTP) keeps."""

    id: str | None = None
    protocol_version: str | None = None
    #: Least severe level of log notifications the client wants (logging/setLevel).
    log_level: str = "debug"
    #: Requests still running, by id, so notifications/cancelled can stop them.
    running: dict[p.RequestId, anyio.CancelScope] = field(default_factory=dict)
    last_used: float = field(default_factory=time.monotonic)

    def cancel_all(self) -> None:
        """Stop every running request (the session ends)."""
        for scope in list(self.running.values()):
            scope.cancel()


def _tool_result(tool: Tool, value: msgspec.Struct) -> dict[str, Any]:
    structured = msgspec.to_builtins(value)
    text = msgspec.json.format(msgspec.json.encode(structured), indent=2).decode()
    return {"content": [{"type": "text", "text": text}], "structuredContent": structured,
            "isError": False}


def _tool_error(message: str) -> dict[str, Any]:
    # A failed run is the tool's result (the model reads it and can try otherwise), not a
    # protocol error: the specification's rule for tool execution errors.
    return {"content": [{"type": "text", "text": message}], "isError": True}


class McpServer:
    """Answers MCP requests with the tools; transport-agnostic."""

    def __init__(self, tools: Tools) -> None:
        self.tools = tools
        self._listing = {"tools": [t.describe() for t in tools.by_name.values()]}

    async def handle(
        self, message: p.Message, session: McpSession, notify: Notify | None
    ) -> p.Response | None:
        """Handle one message; None when nothing is to be answered (a notification, a
        client's response, or a request the client cancelled)."""
        session.last_used = time.monotonic()
        if message.method is None:
            return None  # a response to a request this server never sends
        if message.is_notification:
            self._notification(message, session)
            return None
        request_id = message.id
        assert not isinstance(request_id, msgspec.UnsetType)
        try:
            result = await self._request(message, session, notify)
        except p.RpcError as exc:
            return exc.response(request_id)
        if result is None:
            return None
        return p.Response(jsonrpc=p.JSONRPC, id=request_id, result=result)

    def _notification(self, message: p.Message, session: McpSession) -> None:
        if message.method == "notifications/cancelled":
            try:
                params = msgspec.convert(message.params, p.CancelledParams)
            except msgspec.ValidationError:
                return  # a malformed notification is ignored: there is no one to tell
            scope = session.running.get(params.requestId)
            if scope is not None:
                _log.info("request cancelled by the client", request_id=params.requestId,
                          reason=params.reason)
                scope.cancel()
        # notifications/initialized and any other notification need nothing.

    async def _request(
        self, message: p.Message, session: McpSession, notify: Notify | None
    ) -> Any:
        method = message.method
        if method == "initialize":
            return self._initialize(message, session)
        if method == "ping":
            return {}
        if method == "tools/list":
            return self._listing
        if method == "tools/call":
            return await self._call(message, session, notify)
        if method == "logging/setLevel":
            params = _params(message, p.SetLevelParams)
            if params.level not in p.LOG_LEVELS:
                raise p.RpcError(p.INVALID_PARAMS, f"unknown log level: {params.level}")
            session.log_level = params.level
            return {}
        raise p.RpcError(p.METHOD_NOT_FOUND, f"method not found: {method}")

    def _initialize(self, message: p.Message, session: McpSession) -> dict[str, Any]:
        params = _params(message, p.InitializeParams)
        version = p.negotiate(params.protocolVersion)
        session.protocol_version = version
        _log.info("MCP client initialized", client=params.clientInfo.get("name"),
                  client_version=params.clientInfo.get("version"),
                  requested=params.protocolVersion, protocol_version=version)
        return {
            "protocolVersion": version,
            "capabilities": {"tools": {"listChanged": False}, "logging": {}},
            "serverInfo": {"name": p.SERVER_NAME, "title": "clinvk", "version": __version__},
            "instructions": INSTRUCTIONS,
        }

    async def _call(
        self, message: p.Message, session: McpSession, notify: Notify | None
    ) -> dict[str, Any] | None:
        params = _params(message, p.ToolCallParams)
        tool = self.tools.get(params.name)
        if tool is None:
            raise p.RpcError(p.INVALID_PARAMS, f"unknown tool: {params.name}")
        ctx = self._context(params, session, notify)
        request_id = message.id
        assert not isinstance(request_id, msgspec.UnsetType) and request_id is not None
        started = time.monotonic()
        outcome = "stopped"  # an internal error, or the server shutting down
        try:
            with anyio.CancelScope() as scope:
                session.running[request_id] = scope
                try:
                    result = await self._run(tool, params.arguments, ctx)
                    outcome = "error" if result["isError"] else "ok"
                    return result
                finally:
                    if session.running.get(request_id) is scope:
                        del session.running[request_id]
            outcome = "cancelled"
            return None  # the specification says not to answer a cancelled request
        finally:
            # One line per call, like the HTTP request log (stdio has no other).
            _log.info("MCP tool call", tool=tool.name, outcome=outcome,
                      duration_ms=int((time.monotonic() - started) * 1000))

    async def _run(self, tool: Tool, arguments: Any, ctx: ToolContext) -> dict[str, Any]:
        try:
            args = tool.decode(arguments)
        except msgspec.ValidationError as exc:
            return _tool_error(f"invalid_request: invalid arguments for {tool.name}: {exc}")
        try:
            value = await tool.handler(args, ctx)
        except ClinvkError as exc:
            return _tool_error(f"{exc.code}: {exc.message}")
        except Exception:  # noqa: BLE001 - logged, and answered without its text
            # Never echo an unexpected exception: it may hold paths, prompts or secrets.
            _log.exception("MCP tool failed", tool=tool.name)
            raise p.RpcError(p.INTERNAL_ERROR, "internal error; see the server log") from None
        return _tool_result(tool, value)

    def _context(
        self, params: p.ToolCallParams, session: McpSession, notify: Notify | None
    ) -> ToolContext:
        if notify is None:
            return ToolContext()
        token = (params.meta or {}).get("progressToken")
        progress = None
        if isinstance(token, (str, int)) and not isinstance(token, bool):
            count = 0

            async def progress(text: str) -> None:
                nonlocal count
                count += 1  # the specification wants progress to grow with every message
                await notify(p.Notification(method="notifications/progress", params={
                    "progressToken": token, "progress": count, "message": text}))

        async def log(level: str, data: dict[str, Any]) -> None:
            if p.LOG_LEVELS.index(level) < p.LOG_LEVELS.index(session.log_level):
                return
            await notify(p.Notification(method="notifications/message", params={
                "level": level, "logger": "clinvk", "data": data}))

        return ToolContext(progress=progress, log=log)


def _params(message: p.Message, t: type) -> Any:
    try:
        return msgspec.convert(message.params if message.params is not None else {}, t)
    except msgspec.ValidationError as exc:
        raise p.RpcError(p.INVALID_PARAMS, f"invalid {message.method} params: {exc}") from None
