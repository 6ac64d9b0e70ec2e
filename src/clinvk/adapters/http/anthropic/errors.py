"""Domain errors and HTTP refusals in Anthropic's error envelope, with the statuses and
headers the `anthropic` SDK acts on."""

from __future__ import annotations

import msgspec
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from clinvk.adapters.http.anthropic.schemas import AnthropicError, AnthropicErrorDetail
from clinvk.adapters.http.errors import retry_headers, status_for
from clinvk.adapters.http.headers import SESSION_HEADER
from clinvk.domain.errors import (
    ClinvkError,
    InvalidRequest,
)
from clinvk.domain.models import PromptResult

#: What a client sees of an unexpected fault; the details go to the server log only.
INTERNAL_MESSAGE = "internal error; see the server log"

_encode = msgspec.json.Encoder().encode

#: Anthropic's error type per status; their docs use invalid_request_error for any other 4xx.
_TYPES = {
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}

#: Domain field names -> the request field an Anthropic client sent.
_FIELDS = {
    "backend": "model",
    "prompt": "messages",
    "system_prompt": "system",
    "workdir": "clinvk.workdir",
    "session_id": "clinvk.session_id",
    "approval_mode": "clinvk.approval_mode",
    "sandbox_mode": "clinvk.sandbox_mode",
    "max_turns": "clinvk.max_turns",
}


def error_type(status: int) -> str:
    """Anthropic's `error.type` for an HTTP status."""
    return _TYPES.get(status) or ("api_error" if status >= 500 else "invalid_request_error")


def envelope(status: int, message: str) -> AnthropicError:
    """The error body (also the data of a mid-stream `error` event)."""
    return AnthropicError(error=AnthropicErrorDetail(type=error_type(status), message=message))


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    """An error in Anthropic's envelope; shared middleware (auth 401) can use it too."""
    return Response(
        _encode(envelope(status, message)), status, headers=headers, media_type="application/json"
    )


def message_of(exc: ClinvkError) -> str:
    """The domain's message, led by the offending field as Anthropic words it
    (`messages.1.content.0: ...`)."""
    if isinstance(exc, InvalidRequest) and exc.field:
        field = _FIELDS.get(exc.field, exc.field)
        if not exc.message.startswith(f"{field}:"):
            return f"{field}: {exc.message}"
    return exc.message


def domain_envelope(exc: ClinvkError) -> AnthropicError:
    """The error body for a domain error."""
    return envelope(status_for(exc), message_of(exc))


def domain_error_response(exc: ClinvkError) -> Response:
    """A domain error with its status and the headers a client acts on."""
    headers: dict[str, str] = {}
    result = getattr(exc, "result", None)
    if isinstance(result, PromptResult) and result.session_id:
        headers[SESSION_HEADER] = result.session_id
    # The SDKs retry 429/5xx by default: not when the wait is futile or hours away.
    headers.update(retry_headers(exc))
    return error_response(status_for(exc), message_of(exc), headers)


async def handle_clinvk(request: Request, exc: Exception) -> Response:
    """Exception handler for the domain's error tree."""
    assert isinstance(exc, ClinvkError)
    return domain_error_response(exc)


async def handle_http(request: Request, exc: Exception) -> Response:
    """Exception handler for routing errors (404, 405) and refused bodies (413)."""
    assert isinstance(exc, HTTPException)
    message = str(exc.detail)
    if exc.status_code == 404 and message == "Not Found":  # the router's own wording
        message = f"Not found: {request.method} {request.url.path}"
    return error_response(exc.status_code, message, dict(exc.headers or {}))


async def handle_unexpected(request: Request, exc: Exception) -> Response:
    """Exception handler for faults: a fixed message (the server logs the traceback)."""
    return error_response(500, INTERNAL_MESSAGE)
