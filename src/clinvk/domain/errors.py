"""One error tree for everything clinvk can refuse or fail at.

    ClinvkError
     ├── InvalidRequest          a request that can never succeed as sent (names the field)
     │    └── UnknownBackend     backend name we do not know
     ├── WorkdirForbidden        workdir outside the allowed prefixes / inside a blocked one
     ├── SessionNotFound         no session with that id
     ├── SessionBusy             another request is using the session right now
     ├── Overloaded              admission control refused the run (queue full or wait ran out)
     ├── BackendUnavailable      the backend's command is not installed / not enabled
     ├── BackendFailed           the CLI ran and reported a failure (carries its own message)
     └── BackendTimeout          the run hit its deadline (or idle timeout) and was terminated

Adapters translate OSError, exit codes and timeouts into this tree in one place each;
HTTP translators map it onto each dialect's status codes and envelopes.
"""

from __future__ import annotations

from typing import Any

#: Longest CLI message carried in an error, so a chatty CLI cannot bloat responses.
MAX_MESSAGE_CHARS = 2000


def bounded(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """Trim text to `limit` characters, keeping the end (where CLIs put the cause)."""
    text = text.strip()
    if len(text) <= limit:
        return text
    return "…" + text[-(limit - 1) :]


class ClinvkError(Exception):
    """Base of every error clinvk raises on purpose."""

    code = "clinvk_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidRequest(ClinvkError):
    """The request is malformed or asks for something impossible."""

    code = "invalid_request"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class UnknownBackend(InvalidRequest):
    """No backend by that name."""

    code = "unknown_backend"

    def __init__(self, name: str, known: list[str]) -> None:
        super().__init__(
            f"unknown backend {name!r}; known backends: {', '.join(known)}", field="backend"
        )
        self.name = name


class WorkdirForbidden(ClinvkError):
    """The workdir is not allowed by the server's workdir policy."""

    code = "workdir_forbidden"


class SessionNotFound(ClinvkError):
    """No session with that id."""

    code = "session_not_found"

    def __init__(self, session_id: str) -> None:
        super().__init__(f"session {session_id!r} not found")
        self.session_id = session_id


class SessionBusy(ClinvkError):
    """The session is already running a turn."""

    code = "session_busy"

    def __init__(self, session_id: str) -> None:
        super().__init__(f"session {session_id!r} is busy with another request")
        self.session_id = session_id


class Overloaded(ClinvkError):
    """Too many CLI runs at once; try again later."""

    code = "overloaded"

    def __init__(self, message: str, *, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class BackendUnavailable(ClinvkError):
    """The backend's CLI is not installed (or is disabled in config)."""

    code = "backend_unavailable"

    def __init__(self, backend: str, detail: str = "") -> None:
        msg = f"backend {backend!r} is not available"
        super().__init__(f"{msg}: {detail}" if detail else msg)
        self.backend = backend


class BackendFailed(ClinvkError):
    """The CLI ran and failed; `message` is the CLI's own words (bounded)."""

    code = "backend_failed"

    def __init__(
        self, backend: str, message: str, *, exit_code: int | None = None, result: Any = None
    ) -> None:
        super().__init__(bounded(message) or f"{backend} failed with exit code {exit_code}")
        self.backend = backend
        self.exit_code = exit_code
        #: The partial run result (output so far, usage, ids) when one exists.
        self.result = result


class BackendTimeout(ClinvkError):
    """The run hit its deadline and its process group was terminated."""

    code = "backend_timeout"

    def __init__(self, backend: str, seconds: float, *, idle: bool = False, result: Any = None):
        what = "printed nothing for" if idle else "did not finish within"
        super().__init__(f"{backend} {what} {seconds:g} s; the run was terminated")
        self.backend = backend
        self.seconds = seconds
        self.result = result
