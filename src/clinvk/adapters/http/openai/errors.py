"""Errors in OpenAI's envelope: `{"error": {"message", "type", "param", "code"}}`."""

from __future__ import annotations

from http import HTTPStatus

import msgspec
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from clinvk.adapters.http.errors import retry_headers, status_for
from clinvk.adapters.http.headers import SESSION_HEADER
from clinvk.adapters.http.openai.schemas import OpenAIError, OpenAIErrorDetail
from clinvk.domain.errors import (
    ClinvkError,
    InvalidRequest,
)
from clinvk.domain.models import PromptResult

_encode = msgspec.json.Encoder().encode

_TYPES = {
    401: "authentication_error",
    403: "permission_error",
    429: "rate_limit_error",
}

#: Domain field names -> the request parameter an OpenAI client sent.
_PARAMS = {
    "backend": "model",
    "model": "model",
    "prompt": "messages",
    "system_prompt": "messages",
    "workdir": "clinvk.workdir",
    "session_id": "clinvk.session_id",
    "approval_mode": "clinvk.approval_mode",
    "sandbox_mode": "clinvk.sandbox_mode",
    "max_turns": "clinvk.max_turns",
}

_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "request_too_large"}


def error_type(status: int) -> str:
    """OpenAI's error `type` for an HTTP status."""
    if status >= 500:
        return "server_error"
    return _TYPES.get(status, "invalid_request_error")


def envelope(exc: ClinvkError) -> OpenAIError:
    """The OpenAI error body for a domain error."""
    field = exc.field if isinstance(exc, InvalidRequest) else None
    return OpenAIError(
        error=OpenAIErrorDetail(
            message=exc.message,
            type=error_type(status_for(exc)),
            param=_PARAMS.get(field, field) if field else None,
            code=exc.code,
        )
    )


def internal_envelope() -> OpenAIError:
    """The body for an unexpected failure; never the exception's text (paths, prompts...)."""
    return OpenAIError(
        error=OpenAIErrorDetail(
            message="internal error; see the server log", type="server_error", code="internal_error"
        )
    )


def json_response(value, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A JSON response of a wire value."""
    return Response(_encode(value), status, headers=headers, media_type="application/json")


def error_response(exc: ClinvkError) -> Response:
    """Render a domain error with its status and the headers a client acts on."""
    status = status_for(exc)
    headers: dict[str, str] = {}
    result = getattr(exc, "result", None)
    if isinstance(result, PromptResult) and result.session_id:
        headers[SESSION_HEADER] = result.session_id
    # The SDKs retry 429/5xx by default: not when the wait is futile or hours away.
    headers.update(retry_headers(exc))
    return json_response(envelope(exc), status, headers)


def handle_clinvk(request: Request, exc: Exception) -> Response:
    """Exception handler for the domain's error tree."""
    assert isinstance(exc, ClinvkError)
    return error_response(exc)


def handle_http(request: Request, exc: Exception) -> Response:
    """Exception handler for routing errors (404, 405) and refused bodies (413)."""
    assert isinstance(exc, HTTPException)
    status = exc.status_code
    if status == 404 and exc.detail == HTTPStatus.NOT_FOUND.phrase:
        message = f"Invalid URL ({request.method} {request.url.path})"
    else:
        message = str(exc.detail)
    body = OpenAIError(
        error=OpenAIErrorDetail(
            message=message, type=error_type(status), code=_HTTP_CODES.get(status)
        )
    )
    return json_response(body, status, dict(exc.headers or {}))


def handle_unexpected(request: Request, exc: Exception) -> Response:
    """Last-resort handler: a 500 in the envelope (the server logs the traceback)."""
    return json_response(internal_envelope(), 500)
