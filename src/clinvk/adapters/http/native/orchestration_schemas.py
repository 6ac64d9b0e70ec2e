"""Wire types of POST /api/v1/parallel, /chain and /compare. Requests forbid unknown fields."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from clinvk.adapters.http.native.go_zero import GoTolerantDecoder
from clinvk.domain.chain import ChainStep
from clinvk.domain.models import PromptRequest, TokenUsage

NonEmpty = msgspec.Meta(min_length=1)
AtLeastOne = Annotated[int, msgspec.Meta(ge=1)]


class _Body(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    #: NDJSON progress instead of one JSON answer; None = decided by the Accept header.
    stream: bool | None = None


class ParallelBody(_Body, kw_only=True, forbid_unknown_fields=True):
    """Request of POST /api/v1/parallel."""

    tasks: Annotated[list[PromptRequest], NonEmpty]
    max_parallel: AtLeastOne | None = None
    fail_fast: bool | None = None
    #: Every task is a dry run (nothing runs; each output is the command that would).
    dry_run: bool = False


class ChainBody(_Body, kw_only=True, forbid_unknown_fields=True):
    """Request of POST /api/v1/chain."""

    steps: Annotated[list[ChainStep], NonEmpty]
    stop_on_failure: bool = False
    pass_working_dir: bool = False
    #: Every step is a dry run; `{{previous}}` gets the previous step's dry-run output.
    dry_run: bool = False
    #: Accepted for clinvoker clients; no effect (chain steps are always ephemeral).
    pass_session_id: bool = False
    #: Accepted for clinvoker clients; no effect (chain steps are always ephemeral).
    persist_sessions: bool = False


class CompareBody(_Body, kw_only=True, forbid_unknown_fields=True):
    """Request of POST /api/v1/compare."""

    prompt: str
    backends: Annotated[list[str], NonEmpty]
    #: Model for every backend; default: each backend's configured model.
    model: str | None = None
    sequential: bool = False
    workdir: str | None = None
    #: Every backend is a dry run (nothing runs; each output is the command that would).
    dry_run: bool = False


class TaskResult(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One task of a parallel answer (absent fields: not applicable, as in clinvoker)."""

    index: int
    backend: str
    status: str
    exit_code: int
    duration_ms: int
    output: str
    token_usage: TokenUsage
    model: str | None = None
    error: str | None = None
    error_code: str | None = None


class ParallelResponse(msgspec.Struct, kw_only=True):
    """Answer of POST /api/v1/parallel."""

    total_tasks: int
    completed: int
    failed: int
    cancelled: int
    total_duration_ms: int
    results: list[TaskResult]


class StepResult(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One step of a chain answer (`step` counts from 1; absent fields: not applicable)."""

    step: int
    backend: str
    status: str
    exit_code: int
    duration_ms: int
    output: str
    token_usage: TokenUsage
    name: str | None = None
    model: str | None = None
    error: str | None = None
    error_code: str | None = None


class ChainResponse(msgspec.Struct, kw_only=True):
    """Answer of POST /api/v1/chain."""

    total_steps: int
    completed_steps: int
    failed_step: int
    total_duration_ms: int
    results: list[StepResult]


class CompareEntry(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One backend of a compare answer (absent fields: not applicable, as in clinvoker)."""

    backend: str
    status: str
    exit_code: int
    duration_ms: int
    output: str
    token_usage: TokenUsage
    model: str | None = None
    error: str | None = None
    error_code: str | None = None


class CompareResponse(msgspec.Struct, kw_only=True):
    """Answer of POST /api/v1/compare."""

    prompt: str
    backends: list[str]
    completed: int
    failed: int
    cancelled: int
    total_duration_ms: int
    results: list[CompareEntry]


class ProgressLine(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One NDJSON line of a streamed orchestration.

    `type`: task_started / task_finished (parallel), step_started / step_finished (chain),
    backend_started / backend_finished (compare), delta, heartbeat, summary, error.
    """

    type: str
    index: int | None = None
    step: int | None = None
    name: str | None = None
    backend: str | None = None
    text: str | None = None
    #: *_finished: that run's result; summary: the whole answer, as without streaming.
    result: Any = None
    code: str | None = None
    message: str | None = None


parallel_decoder = GoTolerantDecoder(ParallelBody)
chain_decoder = GoTolerantDecoder(ChainBody)
compare_decoder = GoTolerantDecoder(CompareBody)
