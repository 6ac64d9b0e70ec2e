"""Domain value types: what a prompt asks for, what a run returns, what a session keeps."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from clinvk.domain.tools import BridgeSpec

BackendName = str
ApprovalMode = Literal["default", "auto", "none", "always"]
SandboxMode = Literal["default", "read-only", "workspace", "full"]
OutputFormat = Literal["default", "text", "json", "stream-json"]
SessionStatus = Literal["active", "completed", "error", "paused"]
#: Why the model stopped: normally `end`; `max_tokens` / `max_turns` when a limit cut it short.
StopReason = Literal["end", "max_tokens", "max_turns", "cancelled"]

PositiveInt = Annotated[int, msgspec.Meta(ge=1)]
#: How hard the model should think, from least to most; each CLI maps it onto its own knob.
Effort = Literal["minimal", "low", "medium", "high", "xhigh", "max"]
#: Image formats every CLI (and the model APIs behind them) take.
ImageMediaType = Literal["image/png", "image/jpeg", "image/gif", "image/webp"]

#: Most sessions one listing returns.
MAX_SESSION_PAGE = 1000


class TokenUsage(msgspec.Struct, frozen=True, kw_only=True):
    """Token counts of one run or accumulated over a session."""

    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0

    def __add__(self, other: TokenUsage) -> TokenUsage:
        return TokenUsage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            cached_tokens=self.cached_tokens + other.cached_tokens,
            reasoning_tokens=self.reasoning_tokens + other.reasoning_tokens,
        )

    def minus(self, other: TokenUsage) -> TokenUsage:
        """The difference, never below zero (for CLIs that report per-thread totals)."""
        return TokenUsage(
            input_tokens=max(0, self.input_tokens - other.input_tokens),
            output_tokens=max(0, self.output_tokens - other.output_tokens),
            cached_tokens=max(0, self.cached_tokens - other.cached_tokens),
            reasoning_tokens=max(0, self.reasoning_tokens - other.reasoning_tokens),
        )


class ImageInput(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """An image given with a prompt: its bytes (base64 on the wire), or a remote URL that
    is fetched only when `server.fetch_remote_images` is on."""

    media_type: ImageMediaType | None = None
    data: bytes = b""
    url: str | None = None


class PromptRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One prompt for one backend, with the unified options every backend understands."""

    backend: BackendName
    prompt: str
    model: str | None = None
    workdir: str | None = None
    ephemeral: bool = False
    approval_mode: ApprovalMode = "default"
    sandbox_mode: SandboxMode = "default"
    output_format: OutputFormat = "default"
    max_tokens: PositiveInt | None = None
    max_turns: PositiveInt | None = None
    system_prompt: str | None = None
    verbose: bool = False
    dry_run: bool = False
    extra: list[str] = msgspec.field(default_factory=list)
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)
    #: Continue this clinvk session (the CLI resumes its own session).
    session_id: str | None = None
    #: The CLI's own retry budget for failed model-API calls; None = the CLI's default.
    max_retries: Annotated[int, msgspec.Meta(ge=0)] | None = None
    #: `backend` or `backend/model` entries tried in order when this run fails retryably
    #: before any text was sent.
    fallback: list[str] = msgspec.field(default_factory=list)
    #: Images the prompt refers to (`[image N]` in the prompt is the N-th), in order.
    images: list[ImageInput] = msgspec.field(default_factory=list)
    #: Reasoning effort; None = the CLI's (or its model's) default.
    effort: Effort | None = None
    #: A JSON Schema the final answer must follow (structured output), where the CLI can.
    output_schema: dict[str, Any] | None = None


class RunSpec(msgspec.Struct, frozen=True, kw_only=True):
    """Everything a BackendRunner needs for one CLI run, already resolved by the domain."""

    backend: BackendName
    prompt: str
    workdir: str
    model: str | None = None
    ephemeral: bool = False
    approval_mode: ApprovalMode = "default"
    sandbox_mode: SandboxMode = "default"
    max_tokens: int | None = None
    max_turns: int | None = None
    system_prompt: str | None = None
    extra: tuple[str, ...] = ()
    #: The backend's own session id to resume, if this continues a session.
    resume_id: str | None = None
    #: Whole-run deadline in seconds; None = no deadline.
    timeout_secs: float | None = None
    #: End the run when the CLI prints nothing for this long; None = off.
    idle_timeout_secs: float | None = None
    #: The CLI's retry budget for failed model-API calls; None = the CLI's default.
    max_retries: int | None = None
    #: The clinvk session this run is a turn of (recorded with the live run, so a server
    #: restarted after a crash can mark it interrupted).
    session_id: str | None = None
    #: Images to attach, fetched already (each has data and a media type).
    images: tuple[ImageInput, ...] = ()
    effort: Effort | None = None
    output_schema: dict[str, Any] | None = None
    #: The client's tools, offered through the bridge (client tools); None = none.
    tools: BridgeSpec | None = None


class RunResult(msgspec.Struct, frozen=True, kw_only=True):
    """What one CLI run produced, decoded from its machine-readable stream."""

    backend: BackendName
    output: str
    exit_code: int
    duration_ms: int
    usage: TokenUsage = TokenUsage()
    #: True when the CLI reports usage summed over its whole thread (codex on resume).
    usage_is_cumulative: bool = False
    model: str | None = None
    backend_session_id: str | None = None
    stop_reason: StopReason = "end"
    error: str | None = None
    #: The argv that ran (or would run, for dry_run).
    command: tuple[str, ...] = ()


class PromptResult(msgspec.Struct, frozen=True, kw_only=True):
    """The answer to a PromptRequest, as the services return it."""

    session_id: str | None
    backend: BackendName
    exit_code: int
    duration_ms: int
    output: str
    token_usage: TokenUsage
    model: str | None = None
    stop_reason: StopReason = "end"
    error: str | None = None
    command: tuple[str, ...] = ()


class Session(msgspec.Struct, frozen=True, kw_only=True):
    """A conversation clinvk keeps so a later request can continue it."""

    id: str
    backend: BackendName
    created_at: str
    last_used: str
    working_dir: str
    model: str | None = None
    initial_prompt: str = ""
    status: SessionStatus = "active"
    #: Why the session is in `error` when no turn said so itself (a run the server's crash
    #: interrupted); cleared by the next successful turn.
    error: str | None = None
    turn_count: int = 0
    token_usage: TokenUsage = TokenUsage()
    tags: list[str] = msgspec.field(default_factory=list)
    title: str = ""
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)
    #: The CLI's own session/thread id, used to resume.
    backend_session_id: str | None = None


class SessionQuery(msgspec.Struct, frozen=True, kw_only=True):
    """Filter and page for listing sessions."""

    backend: str | None = None
    status: SessionStatus | None = None
    #: Page size; by default (and for 0, as clinvoker reads it) every match up to the
    #: largest page.
    limit: int = MAX_SESSION_PAGE
    offset: int = 0


class SessionPage(msgspec.Struct, frozen=True, kw_only=True):
    """One page of sessions, newest first, with the total that matched."""

    sessions: list[Session]
    total: int
    limit: int
    offset: int


class BackendInfo(msgspec.Struct, frozen=True, kw_only=True):
    """A backend and whether its CLI can run here."""

    name: BackendName
    available: bool
    model: str | None = None
    #: Warm-pool processes configured / ready for this backend (0 when the pool is off).
    warm_pool_size: int = 0
    warm_pool_ready: int = 0
    #: Requests served by a warm process since the server started.
    warm_pool_hits: int = 0
    #: The CLI's executable (configured or found on this machine); None when unavailable.
    path: str | None = None
    #: What `<cli> --version` answered at start-up; None until known.
    version: str | None = None
    #: Why it is not available (a configured command that is gone, ...); None when it is.
    problem: str | None = None
