"""The one mapping from the domain error tree to HTTP statuses, shared by all dialects."""

from __future__ import annotations

import re

import msgspec

from clinvk.domain import errors as e

_STATUS: list[tuple[type[e.ClinvkError], int]] = [
    (e.InvalidRequest, 400),
    (e.WorkdirForbidden, 403),
    (e.SessionNotFound, 404),
    (e.SessionBusy, 409),
    (e.Overloaded, 429),
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


_FIELD_PATTERNS = [
    re.compile(r"at `\$\.([^`]+)`"),
    re.compile(r"missing required field `([^`]+)`"),
    re.compile(r"unknown field `([^`]+)`"),
]


def invalid_body(exc: msgspec.DecodeError | msgspec.ValidationError) -> e.InvalidRequest:
    """Turn a msgspec decode failure into InvalidRequest naming the field."""
    message = str(exc)
    field = None
    for pattern in _FIELD_PATTERNS:
        match = pattern.search(message)
        if match:
            field = match.group(1)
            break
    if isinstance(exc, msgspec.ValidationError):
        return e.InvalidRequest(f"invalid request body: {message}", field=field)
    return e.InvalidRequest(f"request body is not valid JSON: {message}", field=None)


def decode_body(decoder: msgspec.json.Decoder, body: bytes):
    """Decode a request body or raise InvalidRequest that names the field."""
    if not body.strip():
        raise e.InvalidRequest("request body is empty; send a JSON object")
    try:
        return decoder.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise invalid_body(exc) from None
