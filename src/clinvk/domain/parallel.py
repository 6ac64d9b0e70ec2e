"""The parallel service: many independent prompts at once, at most `max_parallel` CLIs live."""

from __future__ import annotations

import anyio
import msgspec
from anyio.abc import TaskGroup

from clinvk.domain.config import Config
from clinvk.domain.errors import InvalidRequest
from clinvk.domain.models import PromptRequest
from clinvk.domain.orchestration import (
    ProgressSink,
    Run,
    RunFinished,
    RunOutcome,
    elapsed_ms,
    preflight,
    request_deadline,
)
from clinvk.domain.prompt import PromptService
from clinvk.ports import BackendRunner


class ParallelRequest(msgspec.Struct, frozen=True, kw_only=True):
    """Prompts to run side by side."""

    tasks: list[PromptRequest]
    #: Most CLIs running at once; None = `parallel.max_workers`.
    max_parallel: int | None = None
    #: Stop everything at the first failure; None = `parallel.fail_fast`.
    fail_fast: bool | None = None
    #: Every task is a dry run (as if each had `dry_run: true`).
    dry_run: bool = False


class ParallelResult(msgspec.Struct, frozen=True, kw_only=True):
    """Every task's outcome, in input order, with totals.

    completed + failed + cancelled == total_tasks.
    """

    total_tasks: int
    completed: int
    failed: int
    cancelled: int
    total_duration_ms: int
    results: list[RunOutcome]


class ParallelService:
    """Runs independent ephemeral prompts concurrently (task group + capacity limiter)."""

    def __init__(self, *, config: Config, prompt: PromptService, runner: BackendRunner) -> None:
        self._config = config
        self._prompt = prompt
        self._runner = runner

    def check(self, request: ParallelRequest) -> None:
        """Raise InvalidRequest (naming `tasks[i].field`) unless every task can be tried."""
        limit = self._config.parallel.max_tasks
        if not request.tasks:
            raise InvalidRequest("tasks must not be empty", field="tasks")
        if limit > 0 and len(request.tasks) > limit:
            raise InvalidRequest(
                f"at most {limit} tasks per request (parallel.max_tasks); got {len(request.tasks)}",
                field="tasks",
            )
        if request.max_parallel is not None and request.max_parallel < 1:
            raise InvalidRequest("max_parallel must be at least 1", field="max_parallel")
        for i, task in enumerate(request.tasks):
            preflight(self._prompt, self._runner, task, f"tasks[{i}]")

    async def run(
        self, request: ParallelRequest, on_progress: ProgressSink | None = None
    ) -> ParallelResult:
        """Run every task; one task's failure is its own result unless fail_fast is on."""
        self.check(request)
        settings = self._config.parallel
        width = request.max_parallel or max(1, settings.max_workers)
        server_cap = self._config.server.max_concurrent_runs
        if server_cap > 0:
            # More would only wait in (or overflow) the admission queue as `overloaded` tasks.
            width = min(width, server_cap)
        fail_fast = settings.fail_fast if request.fail_fast is None else request.fail_fast
        deadline = request_deadline(self._config)

        tasks = request.tasks
        if request.dry_run:
            tasks = [msgspec.structs.replace(t, dry_run=True) for t in tasks]
        runs = [Run(i, task.backend, on_progress) for i, task in enumerate(tasks)]
        outcomes: list[RunOutcome | None] = [None] * len(tasks)
        announced: set[int] = set()
        trigger: int | None = None  # the task whose failure stopped the rest
        limiter = anyio.CapacityLimiter(width)
        started = anyio.current_time()

        async def announce(outcome: RunOutcome) -> None:
            if on_progress is not None:
                await on_progress(RunFinished(outcome=outcome))
            announced.add(outcome.index)

        async def one(i: int, tg: TaskGroup) -> None:
            nonlocal trigger
            async with limiter:
                if trigger is not None:
                    return  # a failure came while this task waited: it never starts
                outcome = await runs[i].execute(self._prompt, tasks[i])
            outcomes[i] = outcome
            stops_the_rest = fail_fast and outcome.status == "failed" and trigger is None
            if stops_the_rest:
                trigger = i
            await announce(outcome)
            if stops_the_rest:
                tg.cancel_scope.cancel()

        with anyio.move_on_after(deadline) as timer:
            async with anyio.create_task_group() as tg:
                for i in range(len(tasks)):
                    tg.start_soon(one, i, tg)

        for i, run in enumerate(runs):
            outcome = outcomes[i]
            if outcome is None:
                outcome = outcomes[i] = self._cut_short(run, trigger, timer.cancelled_caught)
            if i not in announced:
                await announce(outcome)

        results = [o for o in outcomes if o is not None]
        return ParallelResult(
            total_tasks=len(results),
            completed=sum(o.status == "completed" for o in results),
            failed=sum(o.status == "failed" for o in results),
            cancelled=sum(o.status == "cancelled" for o in results),
            total_duration_ms=elapsed_ms(started),
            results=results,
        )

    def _cut_short(self, run: Run, trigger: int | None, timed_out: bool) -> RunOutcome:
        if trigger is not None:
            return run.cut_short(
                "cancelled", f"cancelled: task {trigger} failed and fail_fast is on", "cancelled"
            )
        if not timed_out:  # only reachable when the caller itself was cancelled
            return run.cut_short("cancelled", "cancelled", "cancelled")
        seconds = request_deadline(self._config) or 0
        if run.started:
            return run.cut_short(
                "failed",
                f"the request's deadline of {seconds:g} s was reached; the run was terminated",
                "backend_timeout",
            )
        return run.cut_short(
            "cancelled",
            f"not started: the request's deadline of {seconds:g} s was reached",
            "cancelled",
        )
