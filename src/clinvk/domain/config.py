"""Typed configuration: the shape of `config.yaml`, with the documented defaults.

Values only; loading (YAML, environment, flags) lives in `clinvk.adapters.config`.
Unknown keys are errors so a typo never silently does nothing.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from clinvk.domain.models import ApprovalMode, SandboxMode

BACKEND_NAMES = ("claude", "codex", "gemini")

DEFAULT_BLOCKED_WORKDIRS = [
    "/etc",
    "/root",
    "/proc",
    "/sys",
    "/dev",
    "/boot",
    "/bin",
    "/sbin",
    "/usr/bin",
    "/usr/sbin",
    "/usr/lib",
    "/lib",
    "/lib64",
    "/var/lib",
    "/var/log",
    "/var/run",
    "/run",
]


class _Section(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    pass


class ServerConfig(_Section):
    """The `server:` section."""

    host: str = "127.0.0.1"
    port: int = 8080
    request_timeout_secs: float = 300
    read_timeout_secs: float = 30
    write_timeout_secs: float = 300
    idle_timeout_secs: float = 120
    api_keys_gopass_path: str = ""
    rate_limit_enabled: bool = False
    rate_limit_rps: float = 10
    rate_limit_burst: int = 20
    rate_limit_cleanup_secs: float = 180
    trusted_proxies: list[str] = msgspec.field(default_factory=list)
    max_request_body_bytes: int = 10 * 1024 * 1024
    cors_allowed_origins: list[str] = msgspec.field(default_factory=list)
    cors_allow_credentials: bool = False
    cors_max_age: int = 300
    allowed_workdir_prefixes: list[str] = msgspec.field(default_factory=list)
    blocked_workdir_prefixes: list[str] = msgspec.field(
        default_factory=lambda: list(DEFAULT_BLOCKED_WORKDIRS)
    )
    metrics_enabled: bool = False
    #: Seconds between keep-alive heartbeats on streams while the CLI is silent.
    heartbeat_secs: float = 15
    #: Seconds to let in-flight requests finish on SIGTERM before CLIs are terminated.
    shutdown_grace_secs: float = 10
    #: Workdir for requests that give none; empty = the directory the server started in.
    default_workdir: str = ""
    #: Most CLI processes running at once over all backends; 0 = no limit.
    max_concurrent_runs: int = 8
    #: Most runs waiting for a slot; more are refused at once with 429.
    queue_max_length: int = 64
    #: Longest a run waits for a slot before it is refused with 429.
    queue_max_wait_secs: float = 60
    #: A warm process unused this long is replaced by a fresh one.
    warm_pool_idle_secs: float = 300
    #: Invocations (option sets) the warm pool keeps per backend: the default one plus ones
    #: learnt from requests that missed, least recently used dropped first.
    warm_pool_signatures: int = 2
    #: Seconds without a request finding the warm pool empty before a pool that grew under
    #: demand gives one process back (never below `backends.<name>.warm_pool`).
    warm_pool_shrink_secs: float = 60
    #: Idle CPU (cores) the machine must have for the warm pool to grow beyond its floor;
    #: 0 = grow whatever the load.
    warm_pool_min_idle_cores: float = 1.0
    #: CPU priority of a warm pool's spare while it starts: `low` (it yields to live runs;
    #: raised back when a run takes it, or `normal` where that is not permitted) or `normal`.
    warm_pool_spare_priority: Literal["low", "normal"] = "low"
    #: Sessions whose CLI process stays alive after a turn, waiting for the next one
    #: (claude, codex, gemini); the least recently used is ended beyond this. 0 = off.
    hot_sessions_max: int = 0
    #: A hot session process waiting longer than this for its next turn is ended.
    hot_session_idle_secs: float = 120
    #: This replica's name in /health (CLINVK_REPLICA_ID); empty = host name and pid.
    replica_id: str = ""
    #: Environment a CLI gets: `inherit` = the server's, minus clinvk's secrets and
    #: `cli_env_deny`; `minimal` = a short allow-list plus each CLI's own prefixes.
    cli_env: Literal["inherit", "minimal"] = "inherit"
    #: Names or globs (`*_TOKEN`) never passed to a CLI, on top of clinvk's own secrets.
    cli_env_deny: list[str] = msgspec.field(default_factory=list)
    #: Serve the MCP endpoint at /mcp (behind the same middleware as the APIs).
    mcp_enabled: bool = True
    #: Most images one request may carry.
    max_images: int = 8
    #: Largest image (decoded bytes) a request may carry; larger ones are refused with 413.
    max_image_bytes: int = 5 * 1024 * 1024
    #: Whether an http(s) image URL is downloaded (off: such a request is refused with 400).
    fetch_remote_images: bool = False
    #: A run parked at a client tool call waits this long for the result, then is ended.
    tool_result_timeout_secs: float = 300
    #: Whether a CLI keeps its own tools (shell, file edits, web) when a request offers
    #: client tools (a request's `clinvk.builtin_tools` overrides it).
    builtin_tools: bool = False


class UnifiedFlags(_Section):
    """The `unified_flags:` section: defaults for every backend."""

    approval_mode: ApprovalMode = "default"
    sandbox_mode: SandboxMode = "default"
    verbose: bool = False
    dry_run: bool = False
    max_turns: int | None = None
    max_tokens: int | None = None
    #: Deadline of one CLI run; 0 = only the request timeout applies.
    command_timeout_secs: float = 0
    #: End a run whose CLI printed nothing for this long; 0 = off.
    idle_timeout_secs: float = 0
    #: Each CLI's retry budget for failed model-API calls; None = the CLI's own default.
    max_retries: int | None = None


class BackendConfig(_Section):
    """One `backends.<name>:` section."""

    enabled: bool = True
    #: Executable to run; default: the backend's name looked up on PATH.
    command: str = ""
    model: str = ""
    allowed_tools: list[str] = msgspec.field(default_factory=list)
    approval_mode: ApprovalMode | None = None
    sandbox_mode: SandboxMode | None = None
    system_prompt: str = ""
    extra_flags: list[str] = msgspec.field(default_factory=list)
    #: Extra environment for the CLI (API endpoints, proxies, config dirs).
    env: dict[str, str] = msgspec.field(default_factory=dict)
    #: Most processes of this CLI at once; 0 = only the global limit applies.
    max_concurrent: int = 0
    #: Processes of this CLI kept started and waiting for a prompt (claude, codex); 0 = off.
    warm_pool: int = 0
    #: Most processes of one pooled invocation kept ready when requests keep finding the
    #: pool empty (it shrinks back to `warm_pool` when quiet); below `warm_pool` = fixed size.
    warm_pool_max: int = 4
    #: This CLI's retry budget for failed model-API calls; None = unified_flags.max_retries.
    max_retries: int | None = None
    #: `backend` or `backend/model` entries tried in order when a run of this backend fails
    #: retryably before any text was sent (a request's own `fallback` replaces this list).
    fallback: list[str] = msgspec.field(default_factory=list)


class SessionConfig(_Section):
    """The `session:` section."""

    auto_resume: bool = False
    retention_days: int = 30
    store_token_usage: bool = True
    default_tags: list[str] = msgspec.field(default_factory=list)
    #: Where sessions are kept (CLINVK_SESSION_STORE): empty = files under `home`/sessions,
    #: a folder = files there, `postgresql://...` = a PostgreSQL database replicas share.
    store: str = ""


class OutputConfig(_Section):
    """The `output:` section (used by the command-line front end)."""

    format: str = "json"
    show_tokens: bool = False
    show_timing: bool = False
    color: bool = True


class ParallelConfig(_Section):
    """The `parallel:` section."""

    max_workers: int = 3
    fail_fast: bool = False
    aggregate_output: bool = True
    #: Most tasks one parallel request may carry.
    max_tasks: int = 100


class McpConfig(_Section):
    """The `mcp:` section: defaults of `clinvk mcp` (flags and CLINVK_MCP_* override)."""

    transport: Literal["stdio", "http"] = "stdio"
    host: str = "127.0.0.1"
    port: int = 8081
    http_path: str = "/mcp"
    #: Also serve GET /health in `clinvk mcp --transport http`.
    expose_health: bool = False


class Config(_Section):
    """The whole configuration."""

    default_backend: str = "claude"
    server: ServerConfig = msgspec.field(default_factory=ServerConfig)
    unified_flags: UnifiedFlags = msgspec.field(default_factory=UnifiedFlags)
    backends: dict[str, BackendConfig] = msgspec.field(default_factory=dict)
    session: SessionConfig = msgspec.field(default_factory=SessionConfig)
    output: OutputConfig = msgspec.field(default_factory=OutputConfig)
    parallel: ParallelConfig = msgspec.field(default_factory=ParallelConfig)
    mcp: McpConfig = msgspec.field(default_factory=McpConfig)
    #: Directory for sessions and other state (CLINVK_HOME); empty = ~/.clinvk.
    home: str = ""
    #: Extra model names for the compatible APIs: alias -> "backend" or "backend/model".
    model_aliases: dict[str, str] = msgspec.field(default_factory=dict)

    def backend(self, name: str) -> BackendConfig:
        """The section for `name`, defaults when absent."""
        return self.backends.get(name) or BackendConfig()
