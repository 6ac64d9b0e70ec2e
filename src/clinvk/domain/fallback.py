"""Fallback policy: which backend to try next when a run fails, and when not to.

A request (or `backends.<name>.fallback` in the config) names `backend` or `backend/model`
entries. When a run fails *retryably* — a rate or usage limit, an overloaded or failing
(5xx) model API, a timeout — before any answer text reached the client, the same request
runs on the next entry. Once text was sent, the client already holds part of one answer: no
fallback, the failure is reported as it is.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from clinvk.domain.errors import (
    BackendFailed,
    BackendLimited,
    BackendOverloaded,
    BackendTimeout,
    ClinvkError,
    InvalidRequest,
)


class Target(msgspec.Struct, frozen=True, kw_only=True):
    """One backend to run a request on, with the model to ask for (None = its default)."""

    backend: str
    model: str | None = None

    def label(self) -> str:
        """`backend` or `backend/model`, as written in a fallback list."""
        return f"{self.backend}/{self.model}" if self.model else self.backend


def parse_target(entry: str, known: Sequence[str], field: str) -> Target:
    """Read one fallback entry; the backend is what comes before the first `/` (model names
    may hold `/` themselves). Raises InvalidRequest naming `field` for an unknown backend."""
    backend, sep, model = entry.strip().partition("/")
    if backend not in known:
        raise InvalidRequest(
            f"fallback entry {entry!r} names no known backend; write `backend` or "
            f"`backend/model` with one of: {', '.join(known)}",
            field=field,
        )
    if sep and not model:
        raise InvalidRequest(f"fallback entry {entry!r} has an empty model", field=field)
    return Target(backend=backend, model=model or None)


def plan(
    primary: Target, entries: Sequence[str], known: Sequence[str], field: str = "fallback"
) -> list[Target]:
    """The targets to try in order: the primary, then each entry once (repeats dropped)."""
    targets = [primary]
    for i, entry in enumerate(entries):
        target = parse_target(entry, known, f"{field}[{i}]")
        if target not in targets:
            targets.append(target)
    return targets


#: Model-API statuses worth trying elsewhere: timeouts, limits, server errors.
_RETRYABLE_STATUS = frozenset({408, 409, 429})


def retryable(exc: ClinvkError) -> bool:
    """Whether a failed run may move on to the next target (if no text was sent yet)."""
    if isinstance(exc, (BackendLimited, BackendOverloaded, BackendTimeout)):
        return True
    if isinstance(exc, BackendFailed):
        status = exc.upstream_status
        return status is not None and (status >= 500 or status in _RETRYABLE_STATUS)
    return False


def should_fall_back(exc: ClinvkError, *, text_sent: bool, has_next: bool) -> bool:
    """The whole decision: a next target exists, nothing was sent, and the failure is
    one another backend may not share."""
    return has_next and not text_sent and retryable(exc)
