"""The compare service: one prompt on several backends, side by side."""

from __future__ import annotations

import anyio
import msgspec

from clinvk.domain.config import Config
from clinvk.domain.errors import InvalidRequest, UnknownBackend
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


class CompareRequest(msgspec.Struct, frozen=True, kw_only=True):
    """One prompt for several backends."""

    prompt: str
    backends: list[str]
    #: One backend after another instead of all at once.
    sequential: bool = False
    workdir: str | None = None
    #: The model every backend is asked for; None = each backend's configured model.
    model: str | None = None
    #: Nothing runs; each output is the command that backend would run.
    dry_run: bool = False


class CompareResult(msgspec.Struct, frozen=True, kw_only=True):
    """One outcome per backend, in the order asked; a failing backend is its own result."""

    prompt: str
    backends: list[str]
    completed: int
    failed: int
    cancelled: int
    total_duration_ms: int
    results: list[RunOutcome]


class CompareService:
    """Runs one prompt on each backend; a failure (or a missing CLI) never cancels the others."""

    def __init__(self, *, config: Config, prompt: PromptService, runner: BackendRunner) -> None:
        self._config = config
        self._prompt = prompt
        self._runner = runner

    def check(self, request: CompareRequest) -> None:
        """Raise InvalidRequest unless the prompt and every backend name can be tried."""
        if not request.backends:
            raise InvalidRequest("backends must not be empty", field="backends")
        known = self._runner.names()
        for i, name in enumerate(request.backends):
            if name not in known:
                unknown = UnknownBackend(name, known)
                unknown.field = f"backends[{i}]"
                raise unknown
            if name in request.backends[:i]:
                raise InvalidRequest(f"backend {name!r} is listed twice", field=f"backends[{i}]")
        for name in request.backends:
            preflight(self._prompt, self._runner, self._request(request, name))

    async def run(
        self, request: CompareRequest, on_progress: ProgressSink | None = None
    ) -> CompareResult:
        """Run the prompt on every backend (all at once unless `sequential`)."""
        self.check(request)
        deadline = request_deadline(self._config)
        runs = [Run(i, name, on_progress) for i, name in enumerate(request.backends)]
        outcomes: list[RunOutcome | None] = [None] * len(runs)
        announced: set[int] = set()
        started = anyio.current_time()

        async def announce(outcome: RunOutcome) -> None:
            if on_progress is not None:
                await on_progress(RunFinished(outcome=outcome))
            announced.add(outcome.index)

        async def one(run: Run) -> None:
            outcome = await run.execute(self._prompt, self._request(request, run.backend))
            outcomes[run.index] = outcome
            await announce(outcome)

        with anyio.move_on_after(deadline):
            if request.sequential:
                for run in runs:
                    await one(run)
            else:
                async with anyio.create_task_group() as tg:
                    for run in runs:
                        tg.start_soon(one, run)

        seconds = deadline or 0
        for run in runs:
            outcome = outcomes[run.index]
            if outcome is None:
                if run.started:
                    outcome = run.cut_short(
                        "failed",
                        f"the request's deadline of {seconds:g} s was reached; "
                        "the run was terminated",
                        "backend_timeout",
                    )
                else:
                    outcome = run.cut_short(
                        "cancelled",
                        f"not started: the request's deadline of {seconds:g} s was reached",
                        "cancelled",
                    )
                outcomes[run.index] = outcome
            if run.index not in announced:
                await announce(outcome)

        results = [o for o in outcomes if o is not None]
        return CompareResult(
            prompt=request.prompt,
            backends=list(request.backends),
            completed=sum(o.status == "completed" for o in results),
            failed=sum(o.status == "failed" for o in results),
            cancelled=sum(o.status == "cancelled" for o in results),
            total_duration_ms=elapsed_ms(started),
            results=results,
        )

    @staticmethod
    def _request(request: CompareRequest, backend: str) -> PromptRequest:
        return PromptRequest(
            backend=backend,
            prompt=request.prompt,
            model=request.model,
            workdir=request.workdir,
            ephemeral=True,
            dry_run=request.dry_run,
        )
