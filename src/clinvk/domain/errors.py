"""One error tree for everything clinvk can refuse or fail at.

    ClinvkError
     ├── InvalidRequest          a request that can never succeed as sent (names the field)
     │    ├── UnknownBackend     backend name we do not know
     │    └── TooLarge           a part of the request is over a configured size limit
     ├── WorkdirForbidden        workdir outside the allowed prefixes / inside a blocked one
     ├── SessionNotFound         no session with that id
     ├── SessionBusy             another request is using the session right now
     ├── SessionStoreUnavailable the session store cannot be written or read (disk full,
     │                           read-only, permissions)
     ├── Overloaded              admission control refused the run (queue full or wait ran out)
     ├── BackendUnavailable      the backend's command is not installed / not enabled
     ├── BackendFailed           the CLI ran and reported a failure (carries its own message)
     │    ├── BackendLimited     the model API refused: rate or usage/quota limit (429)
     │    ├── BackendOverloaded  the model API is overloaded (529 / 503)
     │    └── BackendMissingEnv  the CLI needs an environment variable it was not given
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


class TooLarge(InvalidRequest):
    """A part of the request (an image) is larger than the configured limit."""

    code = "too_large"


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


class SessionStoreUnavailable(ClinvkError):
    """The session store failed (disk full, read-only file system, permissions); the
    message names the cause. Nothing was half-written: the stored sessions are intact."""

    code = "session_store_unavailable"

    def __init__(self, action: str, cause: str) -> None:
        super().__init__(f"the session store cannot {action}: {cause}")
        self.cause = cause


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
        self,
        backend: str,
        message: str,
        *,
        exit_code: int | None = None,
        result: Any = None,
        upstream_status: int | None = None,
    ) -> None:
        super().__init__(bounded(message) or f"{backend} failed with exit code {exit_code}")
        self.backend = backend
        self.exit_code = exit_code
        #: The partial run result (output so far, usage, ids) when one exists.
        self.result = result
        #: The model API's HTTP status behind the failure, when the CLI reported one.
        self.upstream_status = upstream_status


class BackendLimited(BackendFailed):
    """The model API refused the CLI's calls for a rate limit or a usage/quota limit.

    `retry_after`: seconds until the limit resets, when the CLI said so; `kind`: `rate` or
    `usage` (a subscription's or a quota's limit, usually hours away).
    """

    code = "backend_rate_limited"

    def __init__(
        self,
        backend: str,
        message: str,
        *,
        kind: str = "rate",
        retry_after: float | None = None,
        exit_code: int | None = None,
        result: Any = None,
    ) -> None:
        super().__init__(backend, message, exit_code=exit_code, result=result)
        self.kind = kind
        self.retry_after = retry_after


class BackendOverloaded(BackendFailed):
    """The model API said it is overloaded (Anthropic 529, a 503); worth trying elsewhere."""

    code = "backend_overloaded"

    def __init__(
        self,
        backend: str,
        message: str,
        *,
        retry_after: float | None = None,
        exit_code: int | None = None,
        result: Any = None,
    ) -> None:
        super().__init__(backend, message, exit_code=exit_code, result=result)
        self.retry_after = retry_after


class BackendMissingEnv(BackendFailed):
    """The CLI failed because an environment variable it reads was not passed to it."""

    code = "backend_missing_env"

    def __init__(
        self,
        backend: str,
        variable: str,
        message: str,
        *,
        exit_code: int | None = None,
        result: Any = None,
    ) -> None:
        super().__init__(
            backend,
            f"{message} — {backend} needs the environment variable {variable}, which it was "
            f"not given: set it in backends.{backend}.env, or pass the server's own value "
            f"through (server.cli_env: inherit, and keep it out of server.cli_env_deny)",
            exit_code=exit_code,
            result=result,
        )
        self.variable = variable


class BackendTimeout(ClinvkError):
    """The run hit its deadline and its process group was terminated."""

    code = "backend_timeout"

    def __init__(self, backend: str, seconds: float, *, idle: bool = False, result: Any = None):
        what = "printed nothing for" if idle else "did not finish within"
        super().__init__(f"{backend} {what} {seconds:g} s; the run was terminated")
        self.backend = backend
        self.seconds = seconds
        self.result = result
