"""structlog for clinvk: configured once at start-up, plus the per-request log record.

Every line is JSON (one object per line) unless the stream is a terminal, where structlog's
console renderer is easier to read. Lines from the standard library (uvicorn's own) go
through the same renderer, so the log stays one format.

The HTTP middleware opens a *request record* (a dict in a context variable) for each
request; code deeper down (the backend-runner decorator below) adds fields to it with
`annotate_request`, and the middleware writes them in its one summary line. A mutable dict
is used because child tasks (task groups) get a copy of the context: a value set there
would not come back, but changes to the shared dict do.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from contextvars import ContextVar
from typing import IO, Any

import structlog

from clinvk.domain.errors import ClinvkError
from clinvk.domain.models import RunResult, RunSpec
from clinvk.domain.runner_decorator import RunnerDecorator
from clinvk.ports import EventSink

_request: ContextVar[dict[str, Any] | None] = ContextVar("clinvk_request_record", default=None)

#: Marks the stdlib handler we install, so configuring again replaces it instead of adding one.
_HANDLER_FLAG = "_clinvk_handler"


def configure_logging(
    *, level: str = "INFO", json: bool | None = None, stream: IO[str] | None = None
) -> None:
    """Route structlog and stdlib logging to one handler: JSON lines, or console on a TTY."""
    stream = stream if stream is not None else sys.stderr
    if json is None:
        json = not (hasattr(stream, "isatty") and stream.isatty())
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer()
    )
    final: list[Any] = [structlog.stdlib.ProcessorFormatter.remove_processors_meta]
    if json:
        final.append(structlog.processors.format_exc_info)
    final.append(renderer)
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(foreign_pre_chain=shared, processors=final)
    )
    setattr(handler, _HANDLER_FLAG, True)
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _HANDLER_FLAG, False)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    # clinvk writes its own summary line per request; uvicorn's access line would repeat it
    # without the request id.
    logging.getLogger("uvicorn.access").disabled = True


def get_logger(name: str) -> Any:
    """A structlog logger over the stdlib logger `name`: silent until `configure_logging`
    runs (as a library should be), then rendered like every other line."""
    return structlog.wrap_logger(logging.getLogger(name))


@contextlib.contextmanager
def request_record() -> Iterator[dict[str, Any]]:
    """Open the record of one request; fields added with `annotate_request` land in it."""
    record: dict[str, Any] = {}
    token = _request.set(record)
    try:
        yield record
    finally:
        _request.reset(token)


def annotate_request(**fields: Any) -> None:
    """Add fields to the current request's summary line (no-op outside a request)."""
    record = _request.get()
    if record is not None:
        record.update(fields)


def _add_backend(backend: str) -> None:
    record = _request.get()
    if record is None:
        return
    seen = record.setdefault("backends", [])
    if backend not in seen:
        seen.append(backend)


class LoggedBackendRunner(RunnerDecorator):
    """BackendRunner decorator: names the backends a request ran in its summary line."""

    async def run(self, spec: RunSpec, on_event: EventSink | None = None) -> RunResult:
        _add_backend(spec.backend)
        try:
            return await self.inner.run(spec, on_event)
        except ClinvkError as exc:
            annotate_request(backend_error=exc.code)
            raise
