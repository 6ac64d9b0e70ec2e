"""Which error a failed model-API call becomes, once a CLI module has read what its CLI said.

Each CLI module (claude.py, codex.py, gemini.py) knows its own CLI's wording: the HTTP
status it reports, whether it calls the failure a usage/quota limit, and when it says the
limit resets. This module turns those values into the one error tree, the same way for
all three: a usage or quota limit and a 429 are `BackendLimited` (HTTP 429), an
overloaded API (Anthropic 529, a 503) is `BackendOverloaded` (HTTP 503), and any other
status is carried on `BackendFailed.upstream_status`, so the fallback policy can tell a
failing API (5xx) from a refused request (4xx). Pure functions over values.
"""

from __future__ import annotations

import re
from typing import Any

from clinvk.domain.errors import BackendFailed, BackendLimited, BackendOverloaded

#: Model-API statuses that mean "overloaded, try later or elsewhere".
OVERLOADED_STATUS = frozenset({503, 529})
RATE_LIMIT_STATUS = 429

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|h|m|s)")


def api_error(
    backend: str,
    message: str,
    *,
    status: int | None,
    limit: str | None = None,
    retry_after: float | None = None,
    overloaded: bool = False,
    exit_code: int | None = None,
    result: Any = None,
) -> BackendFailed:
    """The error for a failed run whose CLI reported a model-API failure.

    `limit`: "rate" or "usage" when the CLI's words say which limit was hit (else a 429 is
    a rate limit); `overloaded`: the CLI said the API is overloaded whatever the status.
    """
    error: BackendFailed
    if limit is not None or status == RATE_LIMIT_STATUS:
        error = BackendLimited(
            backend, message, kind=limit or "rate", retry_after=retry_after,
            exit_code=exit_code, result=result,
        )
    elif overloaded or status in OVERLOADED_STATUS:
        error = BackendOverloaded(
            backend, message, retry_after=retry_after, exit_code=exit_code, result=result
        )
    else:
        error = BackendFailed(
            backend, message, exit_code=exit_code, result=result, upstream_status=status
        )
    error.upstream_status = status
    return error


def parse_duration(text: str) -> float | None:
    """Seconds in a Go/Google style duration: `37s`, `1.898s`, `6m0s`, `1h2m`, `500ms`."""
    text = text.strip()
    parts = _DURATION_PART.findall(text)
    if not parts or _DURATION_PART.sub("", text).strip():
        return None
    scale = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    return sum(float(number) * scale[unit] for number, unit in parts)


def http_status(value: int | None) -> int | None:
    """`value` when it is an HTTP error status (400-599), else None."""
    return value if value is not None and 400 <= value <= 599 else None
