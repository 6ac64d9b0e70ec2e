"""Claude Code: `claude -p --output-format stream-json --verbose --include-partial-messages`."""

from __future__ import annotations

import base64
import os
import re
import time
from collections.abc import Callable
from typing import Any, Union

import msgspec

from clinvk.adapters.backends.base import (
    Invocation,
    check_extra,
    prompt_via_stdin,
)
from clinvk.adapters.backends.limits import api_error, http_status
from clinvk.adapters.backends.run_files import NO_FILES, RunFiles
from clinvk.domain.config import BackendConfig
from clinvk.domain.errors import BackendFailed, bounded
from clinvk.domain.events import (
    Init,
    Message,
    Retry,
    StreamEvent,
    TextDelta,
    ToolResult,
    ToolUse,
    Usage,
)
from clinvk.domain.models import RunResult, RunSpec, StopReason, TokenUsage
from clinvk.domain.tools import BridgeSpec

# -- wire types of claude's stream-json (only the fields we read) -------------------------


class _Block(msgspec.Struct):
    type: str
    text: str | None = None
    name: str | None = None
    id: str | None = None
    input: Any = None
    tool_use_id: str | None = None
    content: Any = None
    is_error: bool | None = None


class _ApiUsage(msgspec.Struct):
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_input_tokens: int = 0
    cache_creation_input_tokens: int = 0


class _Msg(msgspec.Struct):
    content: list[_Block] | str = []
    model: str | None = None
    usage: _ApiUsage | None = None


class _Delta(msgspec.Struct):
    type: str | None = None
    text: str | None = None
    stop_reason: str | None = None


class _SseEvent(msgspec.Struct):
    type: str
    delta: _Delta | None = None
    message: _Msg | None = None
    usage: _ApiUsage | None = None


class _System(msgspec.Struct, tag="system", tag_field="type"):
    subtype: str = ""
    session_id: str | None = None
    model: str | None = None
    attempt: int | None = None
    max_retries: int | None = None
    retry_delay_ms: float | None = None
    error_status: int | None = None
    error: str | None = None


class _StreamEvent(msgspec.Struct, tag="stream_event", tag_field="type"):
    event: _SseEvent
    parent_tool_use_id: str | None = None


class _Assistant(msgspec.Struct, tag="assistant", tag_field="type"):
    message: _Msg
    parent_tool_use_id: str | None = None
    error: str | None = None


class _User(msgspec.Struct, tag="user", tag_field="type"):
    message: _Msg


class _Result(msgspec.Struct, tag="result", tag_field="type"):
    subtype: str = ""
    is_error: bool = False
    api_error_status: int | None = None
    result: str | None = None
    session_id: str | None = None
    stop_reason: str | None = None
    terminal_reason: str | None = None
    usage: _ApiUsage = msgspec.field(default_factory=_ApiUsage)
    modelUsage: dict[str, Any] = {}
    errors: list[Any] = []
    #: The answer as the `--json-schema` asked for it (what the model gave its
    #: StructuredOutput tool).
    structured_output: Any = None


class _RateLimitInfo(msgspec.Struct):
    status: str = ""
    resetsAt: float | None = None
    rateLimitType: str | None = None


class _RateLimitEvent(msgspec.Struct, tag="rate_limit_event", tag_field="type"):
    """A subscription's limit state (claude.ai logins only; read from the bundle)."""

    rate_limit_info: _RateLimitInfo = msgspec.field(default_factory=_RateLimitInfo)


_Line = Union[_System, _StreamEvent, _Assistant, _User, _Result, _RateLimitEvent]
_decode = msgspec.json.Decoder(_Line).decode


#: The synthetic assistant message's `error` values that are limits, and which kind.
_LIMIT_ERRORS = {"rate_limit": "rate", "billing_error": "usage"}
#: Claude's own wording for a subscription's usage limit or an account out of credit.
_USAGE_WORDS = re.compile(
    r"You've hit your|You’ve hit your|usage limit|spend limit|out of (?:extra )?usage"
    r"|usage credits|credit balance is too low",
    re.IGNORECASE,
)


def _tokens(u: _ApiUsage) -> TokenUsage:
    return TokenUsage(
        input_tokens=u.input_tokens + u.cache_creation_input_tokens + u.cache_read_input_tokens,
        output_tokens=u.output_tokens,
        cached_tokens=u.cache_read_input_tokens,
    )


class ClaudeDecoder:
    """Decodes claude's stream-json lines."""

    def __init__(self, spec: RunSpec, *, now: Callable[[], float] = time.time) -> None:
        self._spec = spec
        self._now = now
        self._session_id: str | None = None
        self._model: str | None = None
        self._deltas: list[str] = []
        self._result: _Result | None = None
        self._last_retry: str | None = None
        #: The synthetic error message's kind (`rate_limit`, `server_error`, ...).
        self._api_error: str | None = None
        #: The last subscription limit claude reported as rejected.
        self._rejected: _RateLimitInfo | None = None
        #: The model the API answered with (assistant messages), preferred over init's.
        self._answered: str | None = None
        #: Usage of the model calls that ended, and of the one under way (its
        #: message_start; output tokens grow until its message_delta).
        self._used = TokenUsage()
        self._current: _ApiUsage | None = None

    def feed(self, line: bytes) -> list[StreamEvent]:
        try:
            item = _decode(line)
        except msgspec.DecodeError:
            return []  # a line type we do not use (or not JSON at all)
        if isinstance(item, _StreamEvent):
            event = item.event
            if item.parent_tool_use_id is not None:
                return []  # a sub-agent's stream; only the main answer is streamed
            if event.type == "content_block_delta" and event.delta and event.delta.type == "text_delta":
                text = event.delta.text or ""
                self._deltas.append(text)
                return [TextDelta(text=text)] if text else []
            if event.type == "message_start" and event.message:
                self._model = self._model or event.message.model
                self._current = event.message.usage
            if event.type == "message_delta":
                return self._message_ended(event)
            return []
        if isinstance(item, _System):
            if item.subtype == "init":
                self._session_id = item.session_id
                self._model = item.model
                return [Init(backend_session_id=item.session_id, model=item.model)]
            if item.subtype == "api_retry":
                self._last_retry = (
                    f"API error {item.error_status or ''} ({item.error}), "
                    f"retry {item.attempt}/{item.max_retries}"
                )
                # claude counts retries: after `attempt` failed calls comes retry number
                # `attempt` of `max_retries`, so it makes max_retries + 1 calls in all.
                delay = item.retry_delay_ms
                return [
                    Retry(
                        attempt=item.attempt or 0,
                        max_attempts=None if item.max_retries is None else item.max_retries + 1,
                        status=item.error_status,
                        message=item.error or "",
                        delay_secs=None if delay is None else round(delay / 1000, 3),
                    )
                ]
            return []
        if isinstance(item, _RateLimitEvent):
            if item.rate_limit_info.status == "rejected":
                self._rejected = item.rate_limit_info
            return []
        if isinstance(item, _Assistant):
            if item.error and item.parent_tool_use_id is None:
                self._api_error = item.error
            if item.parent_tool_use_id is not None or item.error:
                return []  # synthetic error messages repeat what `result` says
            if item.message.model and item.message.model != "<synthetic>":
                self._answered = item.message.model
            out: list[StreamEvent] = []
            blocks = item.message.content if isinstance(item.message.content, list) else []
            text = "".join(b.text or "" for b in blocks if b.type == "text")
            if text:
                out.append(Message(text=text))
            uses = [ToolUse(name=b.name or "", input=b.input, id=b.id)
                    for b in blocks if b.type == "tool_use"]
            if uses:
                # Before the calls, which may pause the run: what it used so far.
                self._current = self._current or item.message.usage
                out.append(Usage(usage=self._so_far(), so_far=True))
            return out + uses
        if isinstance(item, _User):
            blocks = item.message.content if isinstance(item.message.content, list) else []
            return [
                ToolResult(
                    output=_text_of(b.content), id=b.tool_use_id, is_error=bool(b.is_error)
                )
                for b in blocks
                if b.type == "tool_result"
            ]
        self._result = item
        self._session_id = item.session_id or self._session_id
        if item.structured_output is not None:
            # The answer went to the StructuredOutput tool, not into text: stream it too.
            answer = msgspec.json.encode(item.structured_output).decode()
            return [Message(text=answer), Usage(usage=self._usage())]
        return [Usage(usage=self._usage())]

    @property
    def turn_done(self) -> bool:
        """Whether the turn's `result` line came (a process reading stream-json input
        then waits for the next turn)."""
        return self._result is not None

    def feed_stderr(self, line: bytes) -> list[StreamEvent]:
        """claude reports retries on stdout (`api_retry`); stderr holds nothing to stream."""
        return []

    def _so_far(self) -> TokenUsage:
        return self._used + (_tokens(self._current) if self._current else TokenUsage())

    def _message_ended(self, event: _SseEvent) -> list[StreamEvent]:
        """A model call ended: its usage is final (message_delta's output tokens)."""
        if self._current is None:
            return []
        if event.usage is not None:
            self._current = msgspec.structs.replace(
                self._current, output_tokens=event.usage.output_tokens)
        tool_use = event.delta is not None and event.delta.stop_reason == "tool_use"
        out: list[StreamEvent] = [Usage(usage=self._so_far(), so_far=True)] if tool_use else []
        self._used, self._current = self._so_far(), None
        return out

    def _usage(self) -> TokenUsage:
        return _tokens(self._result.usage if self._result else _ApiUsage())

    def finish(self, *, exit_code: int, stderr: str, duration_ms: int) -> RunResult:
        r = self._result
        stop: StopReason = "end"
        if r is not None:
            if r.subtype == "error_max_turns":
                stop = "max_turns"
            elif r.stop_reason == "max_tokens":
                stop = "max_tokens"
        model = self._answered or self._model
        if self._answered is None and r is not None and r.modelUsage:
            model = next(iter(r.modelUsage))
        output = r.result if r is not None and r.result is not None else "".join(self._deltas)
        if r is not None and r.structured_output is not None:
            output = msgspec.json.encode(r.structured_output).decode()
        result = RunResult(
            backend="claude",
            output=output,
            exit_code=exit_code,
            duration_ms=duration_ms,
            usage=self._usage(),
            model=model,
            backend_session_id=self._session_id,
            stop_reason=stop,
        )
        failed = r is None or (r.is_error and stop != "max_turns")
        if not failed:
            return result
        if r is None:
            message = stderr.strip() or self._last_retry or "claude ended without a result"
            raise BackendFailed("claude", bounded(message), exit_code=exit_code, result=result)
        message = r.result or "; ".join(str(e) for e in r.errors) or r.subtype
        status = http_status(r.api_error_status)
        if status:
            message = f"{message} (API status {status})"
        if status is None and self._api_error is None:
            raise BackendFailed("claude", bounded(message), exit_code=exit_code, result=result)
        limit = _LIMIT_ERRORS.get(self._api_error or "")
        if limit is not None and _USAGE_WORDS.search(message):
            limit = "usage"
        retry_after = None
        if self._rejected is not None and self._rejected.resetsAt:
            limit = "usage" if self._rejected.rateLimitType else (limit or "rate")
            retry_after = max(0.0, self._rejected.resetsAt - self._now())
        raise api_error(
            "claude", bounded(message), status=status, limit=limit, retry_after=retry_after,
            exit_code=exit_code, result=result,
        )


#: `--effort` levels of claude 2.1.197 (low, medium, high, xhigh, max) for the domain's.
_EFFORT = {"minimal": "low", "low": "low", "medium": "medium", "high": "high",
           "xhigh": "xhigh", "max": "max"}


def user_message(prompt: str, images: tuple = ()) -> bytes:
    """One stream-json user turn: the prompt text, then each image as a base64 block."""
    content: list[dict[str, Any]] = [{"type": "text", "text": prompt}]
    for image in images:
        content.append({
            "type": "image",
            "source": {"type": "base64", "media_type": image.media_type,
                       "data": base64.b64encode(image.data).decode()},
        })
    message = {"type": "user", "message": {"role": "user", "content": content}}
    return msgspec.json.encode(message) + b"\n"


def bridge_options(tools: BridgeSpec) -> tuple[list[str], dict[str, str]]:
    """claude's flags for the client-tools bridge: the bridge as its only MCP server
    (streamable HTTP), its tools allowed without a prompt, and, unless kept, no built-in
    tools at all (`--tools ""`); the MCP call timeout above the wait for a result. In `-p`
    mode claude waits only about a second and a half for its MCP servers before its first
    model call, which then goes without their tools: MCP_CONNECTION_NONBLOCKING=false makes
    it wait for the bridge (under load the handshake can take longer)."""
    server = {"mcpServers": {tools.server: {"type": "http", "url": tools.url}}}
    argv = ["--mcp-config", msgspec.json.encode(server).decode(), "--strict-mcp-config",
            "--allowedTools", f"mcp__{tools.server}"]
    if not tools.builtin_tools:
        argv += ["--tools", ""]
    timeout_ms = int((tools.result_timeout_secs + 60) * 1000)
    return argv, {"MCP_TOOL_TIMEOUT": str(timeout_ms), "MCP_CONNECTION_NONBLOCKING": "false"}


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(c.get("text", "") for c in content if isinstance(c, dict))
    return ""


class ClaudeBackend:
    """Claude Code CLI."""

    name = "claude"
    env_prefixes = ("ANTHROPIC_", "CLAUDE_", "AWS_", "GOOGLE_CLOUD_", "VERTEX_", "DISABLE_")
    allowed_extra = {
        "--add-dir": True,
        "--allowedTools": True,
        "--allowed-tools": True,
        "--disallowedTools": True,
        "--disallowed-tools": True,
        "--permission-mode": True,
        "--fallback-model": True,
        "--append-system-prompt": True,
        "--bare": False,
        "--max-budget-usd": True,
    }

    def session_files(self, env: dict[str, str], session_id: str) -> tuple[str, tuple[str, ...]]:
        """Where claude keeps a session: `<config dir>/projects/<cwd, "/" as "-">/<id>.jsonl`
        (CLAUDE_CONFIG_DIR, else ~/.claude); that file alone resumes it from the same cwd."""
        home = env.get("HOME") or os.path.expanduser("~")
        root = env.get("CLAUDE_CONFIG_DIR") or os.path.join(home, ".claude")
        return root, (f"projects/*/{session_id}.jsonl",)

    def _options(
        self, spec: RunSpec, config: BackendConfig, command: str, system_prompt_file: str | None
    ) -> tuple[list[str], dict[str, str]]:
        argv = [command, "-p", "--output-format", "stream-json", "--verbose"]
        argv.append("--include-partial-messages")
        env: dict[str, str] = {}
        if spec.model:
            argv += ["--model", spec.model]
        if spec.approval_mode == "auto":
            argv += ["--permission-mode", "acceptEdits"]
        elif spec.approval_mode == "none":
            argv += ["--dangerously-skip-permissions"]
        elif spec.approval_mode == "always":
            argv += ["--permission-mode", "default"]
        if config.allowed_tools:
            argv += ["--allowedTools", ",".join(config.allowed_tools)]
        if spec.tools is not None:
            tool_argv, tool_env = bridge_options(spec.tools)
            argv += tool_argv
            env.update(tool_env)
        if system_prompt_file:
            argv += ["--system-prompt-file", system_prompt_file]
        if spec.max_turns:
            argv += ["--max-turns", str(spec.max_turns)]
        if spec.effort:
            argv += ["--effort", _EFFORT[spec.effort]]
        if spec.output_schema is not None:
            # claude answers through a StructuredOutput tool; the result carries it.
            argv += ["--json-schema", msgspec.json.encode(spec.output_schema).decode()]
        if spec.max_tokens:
            env["CLAUDE_CODE_MAX_OUTPUT_TOKENS"] = str(spec.max_tokens)
        if spec.max_retries is not None:
            # claude's retry budget for failed API calls (default 10, about 3 minutes).
            env["CLAUDE_CODE_MAX_RETRIES"] = str(spec.max_retries)
        if spec.ephemeral:
            argv.append("--no-session-persistence")
        if spec.resume_id:
            argv += ["--resume", spec.resume_id]
        argv += config.extra_flags
        argv += check_extra(spec.extra, self.allowed_extra, self.name)
        return argv, env

    def invocation(
        self,
        spec: RunSpec,
        config: BackendConfig,
        command: str,
        system_prompt_file: str | None,
        *,
        files: RunFiles = NO_FILES,
    ) -> Invocation:
        argv, env = self._options(spec, config, command, system_prompt_file)
        inv = Invocation(argv=argv, env=env)
        if spec.images:
            # Images travel inside the user turn of claude's stream-json input, which it
            # reads only from a pipe.
            argv += ["--input-format", "stream-json"]
            inv.input = user_message(spec.prompt, spec.images)
        elif prompt_via_stdin(spec.prompt):
            inv.stdin = spec.prompt.encode("utf-8", "surrogatepass")
        else:
            argv += ["--", spec.prompt]
        return inv

    def warm_invocation(
        self, spec: RunSpec, config: BackendConfig, command: str, system_prompt_file: str | None
    ) -> Invocation | None:
        """The same run, started before its prompt is known (it reads one JSON turn). Not
        for runs with client tools: their bridge URL is the run's own."""
        if spec.tools is not None:
            return None
        argv, env = self._options(spec, config, command, system_prompt_file)
        return Invocation(argv=argv + ["--input-format", "stream-json"], env=env)

    def hot_invocation(
        self, spec: RunSpec, config: BackendConfig, command: str, system_prompt_file: str | None
    ) -> Invocation | None:
        """A process that takes turn after turn (hot sessions): the warm form, whose
        stream-json input stays open after the turn."""
        return self.warm_invocation(spec, config, command, system_prompt_file)

    def hot_decoder(self, spec: RunSpec, config: BackendConfig) -> ClaudeDecoder:
        return ClaudeDecoder(spec)

    def hot_input(self, spec: RunSpec, decoder: ClaudeDecoder, first: bool) -> bytes:
        """The turn as the next stream-json user message."""
        return self.warm_input(spec.prompt)

    def warm_input(self, prompt: str) -> bytes:
        """The prompt as the one stream-json user turn a warm process reads."""
        message = {"type": "user", "message": {"role": "user", "content": prompt}}
        return msgspec.json.encode(message) + b"\n"

    def decoder(self, spec: RunSpec, config: BackendConfig) -> ClaudeDecoder:
        return ClaudeDecoder(spec)
