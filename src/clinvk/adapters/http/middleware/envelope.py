"""The one rule for which error envelope a path gets, for errors raised before any dialect
sub-app runs (401, 408, 413, 429, 504 from middleware).

`/openai/...` gets OpenAI's `{"error": {...}}`, `/anthropic/...` Anthropic's
`{"type": "error", "error": {...}}`, `/mcp` a JSON-RPC error (which MCP clients show),
everything else the native problem+json. Each envelope
is built from its dialect's own wire types, so a middleware error looks exactly like one
the dialect raised itself.
"""

from __future__ import annotations

from http import HTTPStatus

import msgspec
from starlette.responses import Response

from clinvk.adapters.http.anthropic.errors import error_response as anthropic_error
from clinvk.adapters.http.native.schemas import Problem
from clinvk.adapters.http.openai.errors import error_type as openai_error_type
from clinvk.adapters.http.openai.schemas import OpenAIError, OpenAIErrorDetail

_encode = msgspec.json.Encoder().encode


def phrase(status: int) -> str:
    """The reason phrase of an HTTP status (`Error` for codes without one, e.g. 499)."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def dialect_of(path: str) -> str:
    """`openai`, `anthropic`, `mcp` or `native`: whose envelope an error on `path` uses."""
    for prefix in ("openai", "anthropic", "mcp"):
        if path == f"/{prefix}" or path.startswith(f"/{prefix}/"):
            return prefix
    return "native"


def error_response(
    path: str,
    status: int,
    message: str,
    *,
    code: str,
    headers: dict[str, str] | None = None,
) -> Response:
    """An error response in the envelope of the dialect that owns `path`."""
    dialect = dialect_of(path)
    if dialect == "openai":
        body = OpenAIError(
            error=OpenAIErrorDetail(message=message, type=openai_error_type(status), code=code)
        )
        return Response(_encode(body), status, headers=headers, media_type="application/json")
    if dialect == "anthropic":
        return anthropic_error(status, message, headers)
    if dialect == "mcp":
        # JSON-RPC's invalid request for the client's mistakes, internal error for ours.
        rpc = {"code": -32600 if status < 500 else -32603, "message": message,
               "data": {"status": status, "code": code}}
        body = {"jsonrpc": "2.0", "id": None, "error": rpc}
        return Response(_encode(body), status, headers=headers, media_type="application/json")
    problem = Problem(
        title=phrase(status), status=status, detail=message, code=code, error=message
    )
    return Response(
        _encode(problem), status, headers=headers, media_type="application/problem+json"
    )
