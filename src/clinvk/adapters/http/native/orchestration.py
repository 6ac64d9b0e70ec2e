"""POST /api/v1/parallel, /chain and /compare: one JSON answer, or NDJSON live progress."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from clinvk.adapters.http.errors import decode_body
from clinvk.adapters.http.native.orchestration_schemas import (
    ChainResponse,
    CompareEntry,
    CompareResponse,
    ParallelResponse,
    ProgressLine,
    StepResult,
    TaskResult,
    chain_decoder,
    compare_decoder,
    parallel_decoder,
)
from clinvk.adapters.http.streaming import (
    ClientDisconnected,
    Emit,
    EventStreamResponse,
    until_disconnect,
)
from clinvk.domain.chain import ChainRequest, ChainResult
from clinvk.domain.compare import CompareRequest, CompareResult
from clinvk.domain.errors import ClinvkError
from clinvk.domain.orchestration import (
    Progress,
    ProgressSink,
    RunFinished,
    RunOutcome,
    RunStarted,
    RunText,
)
from clinvk.domain.parallel import ParallelRequest, ParallelResult
from clinvk.domain.services import Services

NDJSON = "application/x-ndjson"
_encode = msgspec.json.Encoder().encode


def _json(value: Any) -> Response:
    return Response(_encode(value), 200, media_type="application/json")


def _wants_stream(request: Request, stream: bool | None) -> bool:
    if stream is not None:
        return stream
    return NDJSON in request.headers.get("accept", "")


# -- domain -> wire ---------------------------------------------------------------------


def _task(o: RunOutcome) -> TaskResult:
    return TaskResult(
        index=o.index, backend=o.backend, status=o.status, exit_code=o.exit_code,
        duration_ms=o.duration_ms, output=o.output, token_usage=o.token_usage, model=o.model,
        error=o.error, error_code=o.error_code,
    )


def _step(o: RunOutcome) -> StepResult:
    return StepResult(
        step=o.index + 1, name=o.name, backend=o.backend, status=o.status,
        exit_code=o.exit_code, duration_ms=o.duration_ms, output=o.output,
        token_usage=o.token_usage, model=o.model, error=o.error, error_code=o.error_code,
    )


def _entry(o: RunOutcome) -> CompareEntry:
    return CompareEntry(
        backend=o.backend, model=o.model, status=o.status, exit_code=o.exit_code,
        duration_ms=o.duration_ms, output=o.output, token_usage=o.token_usage,
        error=o.error, error_code=o.error_code,
    )


def parallel_response(r: ParallelResult) -> ParallelResponse:
    """The wire answer of a parallel result (REST and the MCP tool)."""
    return ParallelResponse(
        total_tasks=r.total_tasks, completed=r.completed, failed=r.failed,
        cancelled=r.cancelled, total_duration_ms=r.total_duration_ms,
        results=[_task(o) for o in r.results],
    )


def chain_response(r: ChainResult) -> ChainResponse:
    """The wire answer of a chain result (REST and the MCP tool)."""
    return ChainResponse(
        total_steps=r.total_steps, completed_steps=r.completed_steps,
        failed_step=r.failed_step, total_duration_ms=r.total_duration_ms,
        results=[_step(o) for o in r.results],
    )


def compare_response(r: CompareResult) -> CompareResponse:
    """The wire answer of a compare result (REST and the MCP tool)."""
    return CompareResponse(
        prompt=r.prompt, backends=r.backends, completed=r.completed, failed=r.failed,
        cancelled=r.cancelled, total_duration_ms=r.total_duration_ms,
        results=[_entry(o) for o in r.results],
    )


class _Lines:
    """How one endpoint tags its progress lines: `task_*` with `index`, `step_*` with `step`
    (1-based) and `name`, `backend_*` with `index`."""

    def __init__(self, noun: str, by_step: bool, result: Callable[[RunOutcome], Any]) -> None:
        self.noun = noun
        self.by_step = by_step
        self.result = result

    def _place(self, index: int) -> dict[str, int]:
        return {"step": index + 1} if self.by_step else {"index": index}

    def line(self, event: Progress) -> ProgressLine:
        if isinstance(event, RunStarted):
            return ProgressLine(type=f"{self.noun}_started", **self._place(event.index),
                                name=event.name, backend=event.backend)
        if isinstance(event, RunText):
            return ProgressLine(type="delta", **self._place(event.index),
                                backend=event.backend, text=event.text)
        assert isinstance(event, RunFinished)
        o = event.outcome
        return ProgressLine(type=f"{self.noun}_finished", **self._place(o.index), name=o.name,
                            backend=o.backend, result=self.result(o))


PARALLEL_LINES = _Lines("task", False, _task)
CHAIN_LINES = _Lines("step", True, _step)
COMPARE_LINES = _Lines("backend", False, _entry)

Work = Callable[[ProgressSink | None], Awaitable[Any]]


class OrchestrationApi:
    """Handlers of the three orchestration endpoints, bound to the services."""

    def __init__(self, services: Services) -> None:
        self.services = services

    async def parallel(self, request: Request) -> Response:
        """POST /api/v1/parallel."""
        body = decode_body(parallel_decoder, await request.body())
        work = ParallelRequest(
            tasks=body.tasks,
            max_parallel=body.max_parallel,
            fail_fast=body.fail_fast,
            dry_run=body.dry_run,
        )
        service = self.services.parallel
        service.check(work)
        return await self._answer(
            request, body.stream, lambda sink: service.run(work, sink),
            parallel_response, PARALLEL_LINES,
        )

    async def chain(self, request: Request) -> Response:
        """POST /api/v1/chain."""
        body = decode_body(chain_decoder, await request.body())
        work = ChainRequest(
            steps=body.steps,
            stop_on_failure=body.stop_on_failure,
            pass_working_dir=body.pass_working_dir,
            dry_run=body.dry_run,
        )
        service = self.services.chain
        service.check(work)
        return await self._answer(
            request, body.stream, lambda sink: service.run(work, sink),
            chain_response, CHAIN_LINES,
        )

    async def compare(self, request: Request) -> Response:
        """POST /api/v1/compare."""
        body = decode_body(compare_decoder, await request.body())
        work = CompareRequest(
            prompt=body.prompt,
            backends=body.backends,
            sequential=body.sequential,
            workdir=body.workdir,
            model=body.model,
            dry_run=body.dry_run,
        )
        service = self.services.compare
        service.check(work)
        return await self._answer(
            request, body.stream, lambda sink: service.run(work, sink),
            compare_response, COMPARE_LINES,
        )

    async def _answer(
        self,
        request: Request,
        stream: bool | None,
        work: Work,
        summary: Callable[[Any], Any],
        lines: _Lines,
    ) -> Response:
        # The request was checked above, so a bad one is already a 400 before any stream.
        if _wants_stream(request, stream):
            return self._stream(work, summary, lines)  # type: ignore[return-value]
        try:
            result = await until_disconnect(request, lambda: work(None))
        except ClientDisconnected:
            return Response(status_code=499)
        return _json(summary(result))

    def _stream(
        self, work: Work, summary: Callable[[Any], Any], lines: _Lines
    ) -> EventStreamResponse:
        async def produce(emit: Emit, response: EventStreamResponse) -> None:
            async def send(line: ProgressLine) -> None:
                await emit(_encode(line) + b"\n")

            async def sink(event: Progress) -> None:
                await send(lines.line(event))

            try:
                result = await work(sink)
            except ClinvkError as exc:  # not expected after the check; still end the stream well
                await send(ProgressLine(type="error", code=exc.code, message=exc.message))
                return
            await send(ProgressLine(type="summary", result=summary(result)))

        return EventStreamResponse(
            produce,
            media_type=NDJSON,
            heartbeat=_encode(ProgressLine(type="heartbeat")) + b"\n",
            heartbeat_secs=self.services.config.server.heartbeat_secs,
        )
