"""The one mapping from the domain error tree to HTTP statuses, shared by all dialects."""

from __future__ import annotations

import math
import re
from typing import Any, Protocol

import msgspec

from clinvk.domain import errors as e

_STATUS: list[tuple[type[e.ClinvkError], int]] = [
    (e.TooLarge, 413),
    (e.InvalidRequest, 400),
    (e.WorkdirForbidden, 403),
    (e.SessionNotFound, 404),
    (e.SessionBusy, 409),
    (e.SessionStoreUnavailable, 503),
    (e.Overloaded, 429),
    (e.BackendLimited, 429),
    (e.BackendOverloaded, 503),
    (e.BackendFailed, 502),
    (e.BackendUnavailable, 503),
    (e.BackendTimeout, 504),
]


def status_for(exc: e.ClinvkError) -> int:
    """HTTP status for a domain error."""
    for kind, status in _STATUS:
        if isinstance(exc, kind):
            return status
    return 500


_AT = re.compile(r"at `\$\.?([^`]*)`")
_NAMED = re.compile(r"(?:missing required field|unknown field) `([^`]+)`")


def error_field(message: str) -> str | None:
    """The full path of the field a msgspec error names: `tasks[1].backend`, `clinvk.bogus`."""
    at = _AT.search(message)
    named = _NAMED.search(message)
    path = at.group(1) if at else ""
    if named:
        return f"{path}.{named.group(1)}" if path else named.group(1)
    return path or None


def invalid_body(exc: msgspec.DecodeError | msgspec.ValidationError) -> e.InvalidRequest:
    """Turn a msgspec decode failure into InvalidRequest naming the field."""
    message = str(exc)
    if isinstance(exc, msgspec.ValidationError):
        return e.InvalidRequest(f"invalid request body: {message}", field=error_field(message))
    return e.InvalidRequest(f"request body is not valid JSON: {message}", field=None)


class BodyDecoder(Protocol):
    """Anything that decodes a body like msgspec.json.Decoder (raising its errors)."""

    def decode(self, body: bytes) -> Any: ...


def decode_body(decoder: BodyDecoder, body: bytes):
    """Decode a request body or raise InvalidRequest that names the field."""
    if not body.strip():
        raise e.InvalidRequest("request body is empty; send a JSON object")
    try:
        return decoder.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise invalid_body(exc) from None


#: A limit further away than this is not worth an SDK's automatic retry.
_SDK_RETRY_LIMIT_SECS = 60


def retry_headers(exc: e.ClinvkError) -> dict[str, str]:
    """`Retry-After` (whole seconds) when the error says when to come back, and
    `x-should-retry: false` (read by the OpenAI and Anthropic SDKs) when a retry is futile
    or far away: a missing CLI, a timed-out agent run, a usage limit hours off."""
    headers: dict[str, str] = {}
    wait = getattr(exc, "retry_after", None)
    if isinstance(exc, (e.Overloaded, e.BackendLimited, e.BackendOverloaded)) and wait:
        headers["Retry-After"] = str(max(1, math.ceil(wait)))
    never = isinstance(exc, (e.BackendUnavailable, e.BackendTimeout, e.BackendMissingEnv))
    far = isinstance(exc, e.BackendLimited) and (
        exc.kind == "usage" or (wait is not None and wait > _SDK_RETRY_LIMIT_SECS)
    )
    if never or far:
        headers["x-should-retry"] = "false"
    return headers
