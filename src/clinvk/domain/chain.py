"""The chain service: steps run one after another, each prompt able to quote earlier answers.

Templates: `{{previous}}` is the output of the most recent step that completed (a failed
step is passed over); `{{steps.NAME}}` is the output of the earlier step named NAME (empty
when that step failed). Spaces inside the braces are allowed (`{{ previous }}`). Text that
is not one of these placeholders, and the substituted outputs themselves, are never changed
(substitution is one pass, so an output containing `{{previous}}` stays as it is).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated

import anyio
import msgspec

from clinvk.domain.config import Config
from clinvk.domain.errors import InvalidRequest
from clinvk.domain.models import ApprovalMode, PositiveInt, PromptRequest, SandboxMode
from clinvk.domain.orchestration import (
    ProgressSink,
    Run,
    RunFinished,
    RunOutcome,
    elapsed_ms,
    not_run,
    preflight,
    request_deadline,
)
from clinvk.domain.prompt import PromptService
from clinvk.ports import BackendRunner

NAME_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
_NAME = re.compile(NAME_PATTERN)
_PLACEHOLDER = re.compile(r"\{\{\s*(?:(previous)|steps\.([A-Za-z0-9_-]{1,64}))\s*\}\}")
#: clinvoker's old "previous step's session id" placeholder, refused as clinvoker does.
_SESSION = re.compile(r"\{\{\s*session\s*\}\}")

StepName = Annotated[str, msgspec.Meta(pattern=NAME_PATTERN)]


class ChainStep(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One step of a chain: a prompt template for one backend."""

    backend: str
    prompt: str
    #: Lets later steps quote this one as `{{steps.NAME}}` (letters, digits, `_`, `-`).
    name: StepName | None = None
    model: str | None = None
    workdir: str | None = None
    approval_mode: ApprovalMode = "default"
    sandbox_mode: SandboxMode = "default"
    max_turns: PositiveInt | None = None
    max_tokens: PositiveInt | None = None
    system_prompt: str | None = None
    #: Accepted like the prompt's `verbose`; changes nothing (CLIs always stream).
    verbose: bool = False
    #: Extra CLI flags, allow-listed per backend like the prompt's `extra`.
    extra: list[str] = msgspec.field(default_factory=list)


class ChainRequest(msgspec.Struct, frozen=True, kw_only=True):
    """Steps to run in order."""

    steps: list[ChainStep]
    #: Stop at the first failed step (the rest are skipped); otherwise go on.
    stop_on_failure: bool = False
    #: A step without `workdir` runs in the previous step's workdir.
    pass_working_dir: bool = False
    #: Nothing runs; each step's output is the command it would run (`{{previous}}` gets it).
    dry_run: bool = False


class ChainResult(msgspec.Struct, frozen=True, kw_only=True):
    """Every step's outcome in order; `failed_step` is the first failed step's number
    (1-based), 0 when none failed."""

    total_steps: int
    completed_steps: int
    failed_step: int
    total_duration_ms: int
    results: list[RunOutcome]


def references(template: str) -> list[str | None]:
    """The placeholders in `template`: None for `{{previous}}`, NAME for `{{steps.NAME}}`."""
    return [m.group(2) if m.group(1) is None else None for m in _PLACEHOLDER.finditer(template)]


def render(template: str, previous: str, outputs: Mapping[str, str]) -> str:
    """Substitute the placeholders in one pass; unknown step names are left as written."""

    def value(match: re.Match[str]) -> str:
        if match.group(1) is not None:
            return previous
        return outputs.get(match.group(2), match.group(0))

    return _PLACEHOLDER.sub(value, template)


class ChainService:
    """Runs chain steps sequentially under one overall deadline."""

    def __init__(self, *, config: Config, prompt: PromptService, runner: BackendRunner) -> None:
        self._config = config
        self._prompt = prompt
        self._runner = runner

    def check(self, request: ChainRequest) -> None:
        """Raise InvalidRequest (naming `steps[i].field`) unless every step can be tried."""
        if not request.steps:
            raise InvalidRequest("steps must not be empty", field="steps")
        seen: set[str] = set()
        for i, step in enumerate(request.steps):
            where = f"steps[{i}]"
            if step.name is not None:
                if not _NAME.match(step.name):
                    raise InvalidRequest(
                        "a step name is 1-64 letters, digits, '_' or '-'", field=f"{where}.name"
                    )
                if step.name in seen:
                    raise InvalidRequest(
                        f"step name {step.name!r} is used twice", field=f"{where}.name"
                    )
            if _SESSION.search(step.prompt):
                raise InvalidRequest(
                    "{{session}} has no value: chain steps are ephemeral and keep no session; "
                    "use {{previous}} for the previous step's output",
                    field=f"{where}.prompt",
                )
            preflight(
                self._prompt,
                self._runner,
                _request(step, step.prompt, step.workdir, request.dry_run),
                where,
            )
            for ref in references(step.prompt):
                if ref is None and i == 0:
                    raise InvalidRequest(
                        "{{previous}} in the first step has no previous step to refer to",
                        field=f"{where}.prompt",
                    )
                if ref is not None and ref not in seen:
                    raise InvalidRequest(
                        f"{{{{steps.{ref}}}}} does not name an earlier step",
                        field=f"{where}.prompt",
                    )
            if step.name is not None:
                seen.add(step.name)

    async def run(
        self, request: ChainRequest, on_progress: ProgressSink | None = None
    ) -> ChainResult:
        """Run the steps in order, feeding earlier outputs into later prompts."""
        self.check(request)
        steps = request.steps
        deadline = request_deadline(self._config)
        results: list[RunOutcome] = []
        previous = ""
        outputs: dict[str, str] = {}
        carried: str | None = None
        current: Run | None = None
        stopped_after: int | None = None
        started = anyio.current_time()

        async def announce(outcome: RunOutcome) -> None:
            results.append(outcome)
            if on_progress is not None:
                await on_progress(RunFinished(outcome=outcome))

        with anyio.move_on_after(deadline) as timer:
            for i, step in enumerate(steps):
                workdir = step.workdir or (carried if request.pass_working_dir else None)
                carried = workdir
                prompt = render(step.prompt, previous, outputs)
                current = Run(i, step.backend, on_progress, name=step.name)
                outcome = await current.execute(
                    self._prompt, _request(step, prompt, workdir, request.dry_run)
                )
                current = None
                ok = outcome.status == "completed"
                if ok:
                    previous = outcome.output
                if step.name is not None:
                    outputs[step.name] = outcome.output if ok else ""
                await announce(outcome)
                if not ok and request.stop_on_failure:
                    stopped_after = i + 1
                    break

        if timer.cancelled_caught:
            seconds = deadline or 0
            if current is not None:
                await announce(
                    current.cut_short(
                        "failed",
                        f"the chain's deadline of {seconds:g} s was reached; "
                        "the step was terminated",
                        "backend_timeout",
                    )
                )
            reason = f"not run: the chain's deadline of {seconds:g} s was reached"
        else:
            reason = f"not run: step {stopped_after} failed and stop_on_failure is on"
        for i in range(len(results), len(steps)):
            await announce(not_run(i, steps[i].backend, "skipped", reason, name=steps[i].name))

        failed = [o.index + 1 for o in results if o.status == "failed"]
        return ChainResult(
            total_steps=len(steps),
            completed_steps=sum(o.status == "completed" for o in results),
            failed_step=failed[0] if failed else 0,
            total_duration_ms=elapsed_ms(started),
            results=results,
        )


def _request(step: ChainStep, prompt: str, workdir: str | None, dry_run: bool) -> PromptRequest:
    return PromptRequest(
        backend=step.backend,
        prompt=prompt,
        model=step.model,
        workdir=workdir,
        ephemeral=True,
        approval_mode=step.approval_mode,
        sandbox_mode=step.sandbox_mode,
        max_turns=step.max_turns,
        max_tokens=step.max_tokens,
        system_prompt=step.system_prompt,
        verbose=step.verbose,
        extra=list(step.extra),
        dry_run=dry_run,
    )
