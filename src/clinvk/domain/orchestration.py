"""What parallel, chain and compare share: the outcome of one run, live progress events,
the checks made before anything runs, and the runner of one ephemeral prompt that turns
every ClinvkError into that run's outcome instead of failing the whole request."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Literal, Union

import anyio
import msgspec

from clinvk.domain import events as ev
from clinvk.domain.chat import TextStream
from clinvk.domain.config import Config
from clinvk.domain.errors import (
    BackendFailed,
    BackendTimeout,
    ClinvkError,
    InvalidRequest,
    UnknownBackend,
    WorkdirForbidden,
)
from clinvk.domain.models import PromptRequest, PromptResult, TokenUsage
from clinvk.domain.prompt import PromptService
from clinvk.ports import BackendRunner

#: completed: the CLI answered. failed: it ran (or tried to) and failed. cancelled: stopped or
#: never started because of fail_fast or the request's deadline. skipped: a chain step not run
#: because an earlier one failed with stop_on_failure.
RunStatus = Literal["completed", "failed", "cancelled", "skipped"]

#: exit_code of a run that has no exit code of its own (never started, cancelled, not installed).
NO_EXIT_CODE = -1


class RunOutcome(msgspec.Struct, frozen=True, kw_only=True):
    """How one run of an orchestration ended; `index` is its position in the request."""

    index: int
    backend: str
    status: RunStatus
    exit_code: int
    duration_ms: int
    output: str = ""
    token_usage: TokenUsage = TokenUsage()
    #: The model that answered, as the CLI reported it.
    model: str | None = None
    #: Chain steps only: the step's name.
    name: str | None = None
    error: str | None = None
    #: The error's machine code (the ClinvkError code, or `cancelled` / `skipped`).
    error_code: str | None = None


class RunStarted(msgspec.Struct, frozen=True, kw_only=True):
    """Progress: run `index` is starting its CLI."""

    index: int
    backend: str
    name: str | None = None


class RunText(msgspec.Struct, frozen=True, kw_only=True):
    """Progress: run `index` produced a piece of answer text."""

    index: int
    backend: str
    text: str


class RunFinished(msgspec.Struct, frozen=True, kw_only=True):
    """Progress: run `index` ended (completed, failed, cancelled or skipped)."""

    outcome: RunOutcome


Progress = Union[RunStarted, RunText, RunFinished]
#: Receives progress events as they happen.
ProgressSink = Callable[[Progress], Awaitable[None]]


def request_deadline(config: Config) -> float | None:
    """Seconds a whole orchestration request may take (server.request_timeout_secs)."""
    limit = config.server.request_timeout_secs
    return limit if limit and limit > 0 else None


def locate(exc: ClinvkError, where: str) -> ClinvkError:
    """Point an error's `field` into the request (`tasks[2].backend`) and return it."""
    field = getattr(exc, "field", None)
    if field is None and isinstance(exc, WorkdirForbidden):
        field = "workdir"
    located = f"{where}.{field}" if where and field else (where or field)
    exc.field = located  # type: ignore[attr-defined]
    return exc


def preflight(
    prompt: PromptService, runner: BackendRunner, request: PromptRequest, where: str = ""
) -> None:
    """Refuse, before anything runs, a request that can never succeed: a blank prompt, an
    unknown backend, a session to continue, a bad workdir or a refused `extra` flag.

    A backend that is known but not installed passes: that is the run's own failure.
    Errors name the field inside the request (`where` + field).
    """
    try:
        if not request.prompt.strip():
            raise InvalidRequest("prompt must not be empty", field="prompt")
        names = runner.names()
        if request.backend not in names:
            raise UnknownBackend(request.backend, names)
        if request.session_id is not None:
            raise InvalidRequest(
                "runs inside parallel, chain and compare are ephemeral and cannot continue a "
                "session; continue it with a single prompt",
                field="session_id",
            )
        workdir = prompt.workdir(request.workdir)
        # The runner's argv builder checks `extra` flags and backend-specific options.
        runner.command(prompt.spec(request, workdir=workdir, resume_id=None))
    except (InvalidRequest, WorkdirForbidden) as exc:
        raise locate(exc, where) from None


def not_run(
    index: int,
    backend: str,
    status: RunStatus,
    error: str,
    *,
    name: str | None = None,
    code: str | None = None,
) -> RunOutcome:
    """The outcome of a run that never started."""
    return RunOutcome(
        index=index,
        backend=backend,
        name=name,
        status=status,
        exit_code=NO_EXIT_CODE,
        duration_ms=0,
        error=error,
        error_code=code or status,
    )


class Run:
    """One ephemeral prompt inside an orchestration.

    Streams its text as progress and remembers enough (start time, text so far, model)
    to describe the run if it is cut short by fail_fast or the deadline.
    """

    def __init__(
        self, index: int, backend: str, sink: ProgressSink | None, *, name: str | None = None
    ) -> None:
        self.index = index
        self.backend = backend
        self.name = name
        self._sink = sink
        self._stream = TextStream()
        self._parts: list[str] = []
        self._model: str | None = None
        self._started_at: float | None = None

    @property
    def started(self) -> bool:
        """Whether the CLI run began."""
        return self._started_at is not None

    async def execute(self, prompt: PromptService, request: PromptRequest) -> RunOutcome:
        """Run `request` (ephemeral); every ClinvkError becomes a failed outcome."""
        if self._sink is not None:
            await self._sink(RunStarted(index=self.index, backend=self.backend, name=self.name))
        self._started_at = anyio.current_time()
        request = msgspec.structs.replace(request, ephemeral=True)
        try:
            result = await prompt.run(request, on_event=self._on_event)
        except ClinvkError as exc:
            return self._failed(exc)
        return self._outcome(result, "completed", error=None, code=None)

    def cut_short(self, status: RunStatus, error: str, code: str) -> RunOutcome:
        """The outcome of this run when it was stopped from outside (or never started)."""
        if not self.started:
            return not_run(self.index, self.backend, status, error, name=self.name, code=code)
        return RunOutcome(
            index=self.index,
            backend=self.backend,
            name=self.name,
            status=status,
            exit_code=NO_EXIT_CODE,
            duration_ms=self._elapsed_ms(),
            output="".join(self._parts),
            model=self._model,
            error=error,
            error_code=code,
        )

    async def _on_event(self, event: ev.StreamEvent) -> None:
        if isinstance(event, ev.Init) and event.model:
            self._model = event.model
        text = self._stream.text(event)
        if text:
            self._parts.append(text)
            if self._sink is not None:
                await self._sink(RunText(index=self.index, backend=self.backend, text=text))

    def _failed(self, exc: ClinvkError) -> RunOutcome:
        partial = getattr(exc, "result", None)
        if isinstance(exc, (BackendFailed, BackendTimeout)) and isinstance(partial, PromptResult):
            return self._outcome(partial, "failed", error=exc.message, code=exc.code)
        exit_code = exc.exit_code if isinstance(exc, BackendFailed) else None
        return RunOutcome(
            index=self.index,
            backend=self.backend,
            name=self.name,
            status="failed",
            exit_code=exit_code if exit_code is not None else NO_EXIT_CODE,
            duration_ms=self._elapsed_ms(),
            output="".join(self._parts),
            model=self._model,
            error=exc.message,
            error_code=exc.code,
        )

    def _outcome(
        self, result: PromptResult, status: RunStatus, *, error: str | None, code: str | None
    ) -> RunOutcome:
        return RunOutcome(
            index=self.index,
            backend=self.backend,
            name=self.name,
            status=status,
            exit_code=result.exit_code,
            duration_ms=result.duration_ms,
            output=result.output,
            token_usage=result.token_usage,
            model=result.model or self._model,
            error=error,
            error_code=code,
        )

    def _elapsed_ms(self) -> int:
        if self._started_at is None:
            return 0
        return int((anyio.current_time() - self._started_at) * 1000)


def elapsed_ms(since: float) -> int:
    """Milliseconds since `since` (an anyio.current_time() value)."""
    return int((anyio.current_time() - since) * 1000)
