"""Codex CLI: `codex exec --json` (JSONL events; no token deltas, whole messages only)."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import time
import tomllib
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Union

import msgspec

from clinvk.adapters.backends.base import (
    Invocation,
    build_env,
    check_extra,
    prompt_via_stdin,
)
from clinvk.adapters.backends.codex_catalog import DirectToolsCatalogs
from clinvk.adapters.backends.limits import api_error
from clinvk.adapters.backends.run_files import NO_FILES, RunFiles
from clinvk.domain.config import BackendConfig
from clinvk.domain.errors import BackendFailed, bounded
from clinvk.domain.events import (
    Init,
    Message,
    Notice,
    Retry,
    StreamEvent,
    ToolResult,
    ToolUse,
    Usage,
)
from clinvk.domain.models import RunResult, RunSpec, TokenUsage
from clinvk.domain.tools import BridgeSpec

_SANDBOX = {"read-only": "read-only", "workspace": "workspace-write", "full": "danger-full-access"}


class _Item(msgspec.Struct):
    type: str
    id: str | None = None
    text: str | None = None
    message: str | None = None
    command: str | None = None
    aggregated_output: str | None = None
    exit_code: int | None = None
    status: str | None = None
    #: mcp_tool_call items: the MCP server and tool, and the call's arguments.
    server: str | None = None
    tool: str | None = None
    arguments: Any = None


class _CodexUsage(msgspec.Struct):
    input_tokens: int = 0
    cached_input_tokens: int = 0
    output_tokens: int = 0
    reasoning_output_tokens: int = 0


class _ErrorBody(msgspec.Struct):
    message: str = ""


class _ThreadStarted(msgspec.Struct, tag="thread.started", tag_field="type"):
    thread_id: str


class _TurnStarted(msgspec.Struct, tag="turn.started", tag_field="type"):
    pass


class _ItemStarted(msgspec.Struct, tag="item.started", tag_field="type"):
    item: _Item


class _ItemUpdated(msgspec.Struct, tag="item.updated", tag_field="type"):
    item: _Item


class _ItemCompleted(msgspec.Struct, tag="item.completed", tag_field="type"):
    item: _Item


class _TurnCompleted(msgspec.Struct, tag="turn.completed", tag_field="type"):
    usage: _CodexUsage = msgspec.field(default_factory=_CodexUsage)


class _TurnFailed(msgspec.Struct, tag="turn.failed", tag_field="type"):
    error: _ErrorBody = msgspec.field(default_factory=_ErrorBody)


class _Error(msgspec.Struct, tag="error", tag_field="type"):
    message: str = ""


_Line = Union[
    _ThreadStarted,
    _TurnStarted,
    _ItemStarted,
    _ItemUpdated,
    _ItemCompleted,
    _TurnCompleted,
    _TurnFailed,
    _Error,
]
_decode = msgspec.json.Decoder(_Line).decode


# codex 0.169.0's words for its retries and failures (`error` / `turn.failed` messages):
#   Reconnecting... 2/5 (unexpected status 503 Service Unavailable: <body>, url: ...)
#   Reconnecting... waiting for network (Connection failed: ...)
#   exceeded retry limit, last status: 429 Too Many Requests
#   unexpected status 529 <unknown status code>: <body>, url: ...
#   We’re currently experiencing high demand, which may cause temporary errors.   (a 500)
#   Quota exceeded. Check your plan and billing details.       (insufficient_quota)
#   You’ve hit your usage limit. ... try again at 6:15 PM.     (usage_limit_reached)
_RECONNECTING = re.compile(r"^Reconnecting\.\.\.\s*(?:(\d+)/(\d+))?[^(]*(?:\((.*)\))?", re.DOTALL)
_STATUS = re.compile(r"(?:unexpected status|last status:)\s*(\d{3})\b")
_HIGH_DEMAND = re.compile(r"experiencing high demand")
_OVERLOADED = re.compile(r"experiencing high load|Server is busy|server_is_overloaded", re.IGNORECASE)
_USAGE = re.compile(r"usage limit|Quota exceeded|insufficient_quota", re.IGNORECASE)
_TRY_AGAIN_AT = re.compile(
    r"try again at (?:(?P<month>[A-Z][a-z]{2}) (?P<day>\d{1,2})(?:st|nd|rd|th), (?P<year>\d{4}) )?"
    r"(?P<hour>\d{1,2}):(?P<minute>\d{2}) (?P<ampm>AM|PM)"
)
_TRY_AGAIN_IN = re.compile(r"try again in (\d+(?:\.\d+)?)\s*(seconds?|s|minutes?|m|hours?|h)\b")
_MONTHS = {m: i for i, m in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1)}


def codex_status(message: str) -> int | None:
    """The model API's HTTP status codex names in a failure message, if any."""
    match = _STATUS.search(message)
    if match is not None:
        return int(match.group(1))
    return 500 if _HIGH_DEMAND.search(message) else None


def reset_in(message: str, now: dt.datetime) -> float | None:
    """Seconds until the limit resets, from codex's "try again at 6:15 PM" (local time;
    the next such time) or "try again at Dec 3rd, 2026 5:09 PM"; `now` is local and aware."""
    after = _TRY_AGAIN_IN.search(message)
    if after is not None:
        unit = after.group(2)[0]
        return float(after.group(1)) * {"s": 1, "m": 60, "h": 3600}[unit]
    at = _TRY_AGAIN_AT.search(message)
    if at is None:
        return None
    hour = int(at["hour"]) % 12 + (12 if at["ampm"] == "PM" else 0)
    minute = int(at["minute"])
    if at["year"]:
        month = _MONTHS.get(at["month"])
        if month is None:
            return None
        when = now.replace(year=int(at["year"]), month=month, day=int(at["day"]),
                           hour=hour, minute=minute, second=0, microsecond=0)
    else:
        when = now.replace(hour=hour, minute=minute, second=0, microsecond=0)
        if when < now:
            when += dt.timedelta(days=1)
    return max(0.0, (when - now).total_seconds())


def _local_now() -> dt.datetime:
    return dt.datetime.fromtimestamp(time.time()).astimezone()


class CodexDecoder:
    """Decodes `codex exec --json` lines."""

    def __init__(
        self,
        spec: RunSpec,
        *,
        now: Callable[[], dt.datetime] = _local_now,
        notice: str | None = None,
    ) -> None:
        """`notice`: something to tell the client with the init event."""
        self._spec = spec
        self._now = now
        self._notice = notice
        self._retries = 0
        self._thread: str | None = spec.resume_id
        self._messages: list[str] = []
        self._usage: TokenUsage | None = None
        self._failure: str | None = None
        self._last_error: str | None = None

    def feed(self, line: bytes) -> list[StreamEvent]:
        try:
            item = _decode(line)
        except msgspec.DecodeError:
            return []
        if isinstance(item, _ThreadStarted):
            self._thread = item.thread_id
            init = Init(backend_session_id=item.thread_id, model=self._spec.model)
            return [init, Notice(message=self._notice)] if self._notice else [init]
        if isinstance(item, _ItemCompleted):
            it = item.item
            if it.type == "agent_message" and it.text is not None:
                self._messages.append(it.text)
                return [Message(text=it.text)]
            if it.type == "error" and it.message:
                return [Notice(message=it.message)]
            if it.type == "command_execution":
                return [
                    ToolResult(
                        output=it.aggregated_output or "",
                        id=it.id,
                        is_error=(it.exit_code or 0) != 0,
                    )
                ]
            return []
        if isinstance(item, _ItemStarted):
            it = item.item
            if it.type == "command_execution":
                return [ToolUse(name="shell", input={"command": it.command}, id=it.id)]
            if it.type == "mcp_tool_call" and it.server and it.tool:
                # Named as claude names MCP tools; announces a client tool's call (the
                # bridge's server) before it reaches the bridge.
                return [ToolUse(name=f"mcp__{it.server}__{it.tool}", input=it.arguments,
                                id=it.id)]
            return []
        if isinstance(item, _TurnCompleted):
            u = item.usage
            self._usage = TokenUsage(
                input_tokens=u.input_tokens,
                output_tokens=u.output_tokens,
                cached_tokens=u.cached_input_tokens,
                reasoning_tokens=u.reasoning_output_tokens,
            )
            return [Usage(usage=self._usage, cumulative=True)]
        if isinstance(item, _TurnFailed):
            self._failure = item.error.message or self._last_error or "turn failed"
            return []
        if isinstance(item, _Error):
            # Also used for "Reconnecting..." notices: remember it, fail only on turn.failed.
            self._last_error = item.message
            retry = _RECONNECTING.match(item.message)
            if retry is None:
                return [Notice(message=item.message)]
            self._retries += 1
            attempt, budget, cause = retry.groups()
            cause = cause or item.message
            # "Reconnecting... k/N": after k failed connections comes retry k of N.
            return [
                Retry(
                    attempt=int(attempt) if attempt else self._retries,
                    max_attempts=int(budget) + 1 if budget else None,
                    status=codex_status(cause),
                    message=bounded(cause, 500),
                )
            ]
        return []

    def feed_stderr(self, line: bytes) -> list[StreamEvent]:
        """codex reports retries in its JSON events; stderr holds nothing to stream."""
        return []

    def finish(self, *, exit_code: int, stderr: str, duration_ms: int) -> RunResult:
        result = RunResult(
            backend="codex",
            output=self._messages[-1] if self._messages else "",
            exit_code=exit_code,
            duration_ms=duration_ms,
            usage=self._usage or TokenUsage(),
            usage_is_cumulative=True,
            model=self._spec.model,
            backend_session_id=self._thread,
        )
        if self._failure is not None or self._usage is None or exit_code != 0:
            message = (
                self._failure
                or _stderr_error(stderr)
                or self._last_error
                or f"codex exited with code {exit_code} without finishing its turn"
            )
            status = codex_status(message)
            usage = bool(_USAGE.search(message))
            overloaded = bool(_OVERLOADED.search(message))
            if status is None and not (usage or overloaded):
                raise BackendFailed("codex", bounded(message), exit_code=exit_code, result=result)
            raise api_error(
                "codex", bounded(message), status=status, limit="usage" if usage else None,
                retry_after=reset_in(message, self._now()) if usage else None,
                overloaded=overloaded, exit_code=exit_code, result=result,
            )
        return result


def _stderr_error(stderr: str) -> str:
    lines = [
        ln
        for ln in stderr.splitlines()
        if ln.strip() and not ln.startswith(("Reading additional input", "Reading prompt"))
    ]
    return "\n".join(lines[-10:])


#: Providers built into codex. codex refuses `model_providers.<id>` settings for them, so
#: their retry budget stays codex's own (define a provider of your own to set it).
BUILTIN_PROVIDERS = frozenset({"openai", "ollama", "lmstudio", "amazon-bedrock"})
DEFAULT_PROVIDER = "openai"
_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _toml_value(text: str) -> Any:
    """A `-c key=value` value as codex reads it: TOML, else the raw text as a string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text.strip()


def config_flags(flags: Sequence[str]) -> tuple[list[tuple[str, Any]], str | None, bool]:
    """From codex flags: the `-c key=value` overrides in order, the `-p` profile, `--oss`."""
    overrides: list[tuple[str, Any]] = []
    profile: str | None = None
    oss = False
    items = iter(flags)
    for flag in items:
        name, eq, inline = flag.partition("=")
        if name in ("-c", "--config"):
            value = inline if eq else next(items, "")
            key, has_value, raw = value.partition("=")
            if has_value:
                overrides.append((key.strip(), _toml_value(raw)))
        elif name in ("-p", "--profile"):
            profile = inline if eq else next(items, None)
        elif name == "--oss":
            oss = True
    return overrides, profile, oss


def retry_provider(
    flags: Sequence[str], user_config: Mapping[str, Any]
) -> tuple[str | None, str | None]:
    """(id, None) of the model provider a codex run uses when its retry settings can be
    set — one defined in `user_config` (codex's config.toml) or by `-c` flags, not one of
    codex's built-in ones — else (None, why not). The provider is resolved as codex does:
    `-c model_provider=`, else the profile's `model_provider`, else config.toml's, else
    codex's default (`openai`)."""
    overrides, profile, oss = config_flags(flags)
    if oss:
        return None, "--oss runs one of codex's built-in local providers"
    set_by_flag = {key: value for key, value in overrides}
    profile = profile or set_by_flag.get("profile") or user_config.get("profile")
    profiles = user_config.get("profiles")
    chosen = profiles.get(profile, {}) if isinstance(profiles, dict) and profile else {}
    provider = (
        set_by_flag.get("model_provider")
        or (chosen.get("model_provider") if isinstance(chosen, dict) else None)
        or user_config.get("model_provider")
        or DEFAULT_PROVIDER
    )
    if not isinstance(provider, str) or provider in BUILTIN_PROVIDERS:
        return None, (
            f"the provider {provider!r} is built into codex, which refuses retry settings "
            "for it; define it under an id of your own in config.toml"
        )
    if not _BARE_KEY.match(provider):
        return None, f"the provider id {provider!r} cannot be named in a -c setting"
    defined = user_config.get("model_providers")
    by_flag = any(
        key == f"model_providers.{provider}" or key.startswith(f"model_providers.{provider}.")
        for key in set_by_flag
    )
    if by_flag or (isinstance(defined, dict) and provider in defined):
        return provider, None
    return None, f"the provider {provider!r} is not defined in codex's config"


def active_provider(flags: Sequence[str], user_config: Mapping[str, Any]) -> str | None:
    """The id of the provider whose retry settings a codex run can be given (see
    `retry_provider`), or None."""
    return retry_provider(flags, user_config)[0]


def retry_flags(provider: str | None, max_retries: int | None) -> list[str]:
    """`-c` flags giving `provider` a retry budget of `max_retries` retries.

    codex nests two budgets: `request_max_retries` (silent retries of one HTTP request)
    inside `stream_max_retries` (whole-turn reconnects, each reported as "Reconnecting...
    k/n"), so setting both to n makes up to (n + 1)² calls (n = 1: 4 calls on a 500). The
    reconnect loop retries everything the request loop does (5xx, a dropped connection)
    and says so, so the whole budget goes there: n + 1 calls at most, each retry visible."""
    if provider is None or max_retries is None:
        return []
    prefix = f"model_providers.{provider}"
    return [
        "-c", f"{prefix}.request_max_retries=0",
        "-c", f"{prefix}.stream_max_retries={max_retries}",
    ]


def user_config(env: Mapping[str, str]) -> dict[str, Any]:
    """codex's config.toml as the CLI will read it ($CODEX_HOME, else ~/.codex); {} when
    it is missing or unreadable (codex then reports the problem itself)."""
    home = env.get("CODEX_HOME") or os.environ.get("CODEX_HOME")
    if not home:
        user_home = env.get("HOME") or os.environ.get("HOME") or os.path.expanduser("~")
        home = os.path.join(user_home, ".codex")
    try:
        with open(os.path.join(home, "config.toml"), "rb") as f:
            return tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError):
        return {}


def _toml_string(value: str) -> str:
    # A JSON string is a valid TOML basic string for everything json.dumps emits.
    return json.dumps(value)


#: codex's own tools, turned off while the client's tools are offered (`builtin_tools`
#: false): shell and exec sessions, image viewing, sub-agents, goals; web search by setting.
_BUILTIN_FEATURES = ("shell_tool", "unified_exec", "view_image", "multi_agent", "goals")


def bridge_flags(tools: BridgeSpec, catalog: str | None = None) -> list[str]:
    """codex's flags for the client-tools bridge: a streamable HTTP MCP server whose tools
    run without approval (`exec` never asks, so unapproved calls would fail), a tool
    timeout above the wait for a result, the catalog offering tools directly (see
    codex_catalog.py) and, unless kept, its own tools off."""
    prefix = f"mcp_servers.{tools.server}"
    timeout = int(tools.result_timeout_secs + 60)
    argv = ["-c", f"{prefix}.url={_toml_string(tools.url)}",
            "-c", f'{prefix}.default_tools_approval_mode="approve"',
            "-c", f"{prefix}.tool_timeout_sec={timeout}"]
    if catalog is not None:
        argv += ["-c", f"model_catalog_json={_toml_string(catalog)}"]
    if not tools.builtin_tools:
        for feature in _BUILTIN_FEATURES:
            argv += ["--disable", feature]
        argv += ["-c", 'web_search="disabled"']
    return argv


class CodexBackend:
    """OpenAI Codex CLI."""

    name = "codex"
    env_prefixes = ("OPENAI_", "CODEX_", "AZURE_OPENAI_")
    allowed_extra = {
        "--add-dir": True,
        "-s": True,
        "--sandbox": True,
        "-p": True,
        "--profile": True,
        "--oss": False,
        "--local-provider": True,
    }

    def __init__(self, catalogs: DirectToolsCatalogs | None = None) -> None:
        self._catalogs = catalogs if catalogs is not None else DirectToolsCatalogs()

    def session_files(self, env: dict[str, str], session_id: str) -> tuple[str, tuple[str, ...]]:
        """Where codex keeps a thread: `<CODEX_HOME>/sessions/YYYY/MM/DD/rollout-<time>-<id>.jsonl`
        (CODEX_HOME defaults to ~/.codex); that file alone resumes it, its SQLite files aside."""
        home = env.get("HOME") or os.path.expanduser("~")
        root = env.get("CODEX_HOME") or os.path.join(home, ".codex")
        return root, (f"sessions/*/*/*/rollout-*-{session_id}.jsonl",)

    def _flags(self, spec: RunSpec, config: BackendConfig) -> list[str]:
        return [*config.extra_flags, *check_extra(spec.extra, self.allowed_extra, self.name)]

    def prepare(self, spec: RunSpec, config: BackendConfig, command: str) -> None:
        """Render the catalog a run with client tools names (a blocking call, once), so
        building its argv finds it ready; the runner calls this in a worker thread."""
        if spec.tools is not None:
            self._catalog(spec, config, command)

    def _catalog(self, spec: RunSpec, config: BackendConfig, command: str) -> str | None:
        assert spec.tools is not None
        env = build_env(self.env_prefixes, config, {})
        return self._catalogs.path(command, env, self._flags(spec, config),
                                   builtin_tools=spec.tools.builtin_tools)

    def _options(
        self, spec: RunSpec, config: BackendConfig, command: str, system_prompt_file: str | None
    ) -> list[str]:
        argv = [command, "exec", "--json", "--skip-git-repo-check"]
        if spec.model:
            argv += ["-m", spec.model]
        if spec.sandbox_mode in _SANDBOX and spec.approval_mode != "none":
            argv += ["-s", _SANDBOX[spec.sandbox_mode]]
        if spec.approval_mode == "none":
            argv.append("--dangerously-bypass-approvals-and-sandbox")
        if system_prompt_file:
            argv += ["-c", f"model_instructions_file={_toml_string(system_prompt_file)}"]
        if spec.ephemeral:
            argv.append("--ephemeral")
        if spec.effort:
            # codex passes the level on as the Responses API's `reasoning.effort`.
            argv += ["-c", f"model_reasoning_effort={_toml_string(spec.effort)}"]
        if spec.tools is not None:
            argv += bridge_flags(spec.tools, self._catalog(spec, config, command))
        flags = self._flags(spec, config)
        argv += flags
        if spec.max_retries is not None:
            argv += retry_flags(active_provider(flags, user_config(config.env)), spec.max_retries)
        if spec.resume_id:
            argv += ["resume", spec.resume_id]
        return argv

    def invocation(
        self,
        spec: RunSpec,
        config: BackendConfig,
        command: str,
        system_prompt_file: str | None,
        *,
        files: RunFiles = NO_FILES,
    ) -> Invocation:
        argv = self._options(spec, config, command, system_prompt_file)
        # Both `exec` and `exec resume` take these, after the subcommand's own arguments.
        for image in files.images:
            argv.append(f"--image={image}")  # one value each: `--image` takes several
        if files.output_schema is not None:
            argv += ["--output-schema", files.output_schema]
        inv = Invocation(argv=argv)
        if prompt_via_stdin(spec.prompt):
            argv.append("-")
            inv.stdin = spec.prompt.encode("utf-8", "surrogatepass")
        else:
            argv += ["--", spec.prompt]
        return inv

    def warm_invocation(
        self, spec: RunSpec, config: BackendConfig, command: str, system_prompt_file: str | None
    ) -> Invocation | None:
        """The same run, started before its prompt is known (`exec -` reads it from stdin).
        Not for resumed runs (`resume` does not read its prompt from stdin), nor for runs
        with client tools (their bridge URL is the run's own)."""
        if spec.resume_id or spec.tools is not None:
            return None
        return Invocation(argv=self._options(spec, config, command, system_prompt_file) + ["-"])

    def warm_input(self, prompt: str) -> bytes:
        """The prompt as raw stdin text."""
        return prompt.encode("utf-8", "surrogatepass")

    def hot_invocation(
        self, spec: RunSpec, config: BackendConfig, command: str, system_prompt_file: str | None
    ) -> Invocation | None:
        """The run as a `codex app-server` that takes turn after turn (hot sessions), or None
        when its options need `exec` (a system prompt file, ephemeral, request flags)."""
        from clinvk.adapters.backends.codex_app import app_server_argv  # it imports us

        if system_prompt_file or spec.ephemeral or spec.extra:
            return None
        flags = list(config.extra_flags)
        if spec.max_retries is not None:
            flags += retry_flags(active_provider(flags, user_config(config.env)), spec.max_retries)
        argv = app_server_argv(command, spec, flags)
        return Invocation(argv=argv) if argv is not None else None

    def hot_decoder(self, spec: RunSpec, config: BackendConfig):
        """The decoder of one turn on an app server (it also writes the protocol's side)."""
        from clinvk.adapters.backends.codex_app import CodexAppDecoder

        return CodexAppDecoder(spec)

    def hot_input(self, spec: RunSpec, decoder, first: bool) -> bytes:
        """What starts the turn: the protocol's opening on a fresh process, else `turn/start`."""
        return decoder.opening(first)

    def decoder(self, spec: RunSpec, config: BackendConfig) -> CodexDecoder:
        notice = None
        if spec.max_retries is not None:
            _, problem = retry_provider(self._flags(spec, config), user_config(config.env))
            if problem is not None:
                notice = f"max_retries not applied to codex: {problem}"
        return CodexDecoder(spec, notice=notice)


