"""JSON-RPC 2.0 and the parts of MCP clinvk speaks: wire types, error codes, versions."""

from __future__ import annotations

from typing import Any

import msgspec

JSONRPC = "2.0"

# JSON-RPC's own codes.
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
#: Also what an unknown tool gets, as in clinvoker and the MCP specification.
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
#: The request was cancelled (the code LSP and many MCP servers use).
REQUEST_CANCELLED = -32800

#: Handshake-era revisions this server speaks, oldest first.
PROTOCOL_VERSIONS = ("2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25")
#: What clinvoker always answers; also the answer to an initialize that names no version.
ORIGINAL_VERSION = PROTOCOL_VERSIONS[0]
LATEST_VERSION = PROTOCOL_VERSIONS[-1]

SERVER_NAME = "clinvk"

#: MCP log levels, least severe first (RFC 5424 names).
LOG_LEVELS = ("debug", "info", "notice", "warning", "error", "critical", "alert", "emergency")

RequestId = int | str


def negotiate(requested: str | None) -> str:
    """The protocol version to answer an initialize with.

    The client's own when this server speaks it; clinvoker's when the client names none
    (clinvoker's own clients); otherwise the newest this server speaks, for the client
    to accept or disconnect (the specification's rule).
    """
    if not requested:
        return ORIGINAL_VERSION
    return requested if requested in PROTOCOL_VERSIONS else LATEST_VERSION


class Message(msgspec.Struct, kw_only=True):
    """Any JSON-RPC message a client sends: request, notification or response."""

    jsonrpc: str | None = None
    id: RequestId | None | msgspec.UnsetType = msgspec.UNSET
    method: str | None = None
    params: Any = None
    result: Any = None
    error: Any = None

    @property
    def is_notification(self) -> bool:
        """No id (or a null one, as clinvoker reads it): nothing may be answered."""
        return self.id is msgspec.UNSET or self.id is None


class ErrorObject(msgspec.Struct, kw_only=True, omit_defaults=True):
    code: int
    message: str
    data: Any = None


class Response(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A JSON-RPC response: `result` or `error`, never both."""

    #: No default, so `omit_defaults` never leaves it out.
    jsonrpc: str
    id: RequestId | None
    result: Any = None
    error: ErrorObject | None = None


class Notification(msgspec.Struct, kw_only=True):
    method: str
    params: dict[str, Any]
    jsonrpc: str = JSONRPC


class RpcError(Exception):
    """A request ends in a JSON-RPC error (protocol errors; tool failures are results)."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data

    def response(self, request_id: RequestId | None) -> Response:
        return Response(jsonrpc=JSONRPC, id=request_id,
                        error=ErrorObject(code=self.code, message=self.message, data=self.data))


class ToolCallParams(msgspec.Struct, kw_only=True):
    name: str
    arguments: dict[str, Any] | None = None
    meta: dict[str, Any] | None = msgspec.field(default=None, name="_meta")


class CancelledParams(msgspec.Struct, kw_only=True):
    requestId: RequestId
    reason: str | None = None


class SetLevelParams(msgspec.Struct, kw_only=True):
    level: str


class InitializeParams(msgspec.Struct, kw_only=True):
    protocolVersion: str | None = None
    capabilities: dict[str, Any] = {}
    clientInfo: dict[str, Any] = {}


encode = msgspec.json.Encoder().encode
message_decoder = msgspec.json.Decoder(Message)


def error_response(request_id: RequestId | None, code: int, message: str) -> Response:
    """A JSON-RPC error response."""
    return Response(jsonrpc=JSONRPC, id=request_id, error=ErrorObject(code=code, message=message))
