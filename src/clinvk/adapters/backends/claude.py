"""Claude Code: `claude -p --output-format stream-json --verbose --include-partial-messages`."""

from __future__ import annotations

from typing import Any, Union

import msgspec

from clinvk.adapters.backends.base import (
    Invocation,
    check_extra,
    prompt_via_stdin,
)
from clinvk.domain.config import BackendConfig
from clinvk.domain.errors import BackendFailed, bounded
from clinvk.domain.events import (
    Init,
    Message,
    Notice,
    StreamEvent,
    TextDelta,
    ToolResult,
    ToolUse,
    Usage,
)
from clinvk.domain.models import RunResult, RunSpec, StopReason, TokenUsage

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


class _Msg(msgspec.Struct):
    content: list[_Block] | str = []
    model: str | None = None


class _Delta(msgspec.Struct):
    type: str | None = None
    text: str | None = None
    stop_reason: str | None = None


class _ApiUsage(msgspec.Struct):
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_input_tokens: int = 0
    cache_creation_input_tokens: int = 0


class _SseEvent(msgspec.Struct):
    type: str
    delta: _Delta | None = None
    message: _Msg | None = None


class _System(msgspec.Struct, tag="system", tag_field="type"):
    subtype: str = ""
    session_id: str | None = None
    model: str | None = None
    attempt: int | None = None
    max_retries: int | None = None
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


_Line = Union[_System, _StreamEvent, _Assistant, _User, _Result]
_decode = msgspec.json.Decoder(_Line).decode


class ClaudeDecoder:
    """Decodes claude's stream-json lines."""

    def __init__(self, spec: RunSpec) -> None:
        self._spec = spec
        self._session_id: str | None = None
        self._model: str | None = None
        self._deltas: list[str] = []
        self._result: _Result | None = None
        self._last_retry: str | None = None
        #: The model the API answered with (assistant messages), preferred over init's.
        self._answered: str | None = None

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
            if event.type == "message_start" and event.message and event.message.model:
                self._model = self._model or event.message.model
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
                return [Notice(message=self._last_retry)]
            return []
        if isinstance(item, _Assistant):
            if item.parent_tool_use_id is not None or item.error:
                return []  # synthetic error messages repeat what `result` says
            if item.message.model and item.message.model != "<synthetic>":
                self._answered = item.message.model
            out: list[StreamEvent] = []
            blocks = item.message.content if isinstance(item.message.content, list) else []
            text = "".join(b.text or "" for b in blocks if b.type == "text")
            if text:
                out.append(Message(text=text))
            for b in blocks:
                if b.type == "tool_use":
                    out.append(ToolUse(name=b.name or "", input=b.input, id=b.id))
            return out
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
        return [Usage(usage=self._usage())]

    def _usage(self) -> TokenUsage:
        u = self._result.usage if self._result else _ApiUsage()
        return TokenUsage(
            input_tokens=u.input_tokens + u.cache_creation_input_tokens + u.cache_read_input_tokens,
            output_tokens=u.output_tokens,
            cached_tokens=u.cache_read_input_tokens,
        )

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
        result = RunResult(
            backend="claude",
            output=(r.result if r is not None and r.result is not None else "".join(self._deltas)),
            exit_code=exit_code,
            duration_ms=duration_ms,
            usage=self._usage(),
            model=model,
            backend_session_id=self._session_id,
            stop_reason=stop,
        )
        failed = r is None or (r.is_error and stop != "max_turns")
        if failed:
            if r is not None:
                message = r.result or "; ".join(str(e) for e in r.errors) or r.subtype
                if r.api_error_status:
                    message = f"{message} (API status {r.api_error_status})"
            else:
                message = stderr.strip() or self._last_retry or "claude ended without a result"
            raise BackendFailed("claude", bounded(message), exit_code=exit_code, result=result)
        return result


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
        if system_prompt_file:
            argv += ["--system-prompt-file", system_prompt_file]
        if spec.max_turns:
            argv += ["--max-turns", str(spec.max_turns)]
        if spec.max_tokens:
            env["CLAUDE_CODE_MAX_OUTPUT_TOKENS"] = str(spec.max_tokens)
        if spec.ephemeral:
            argv.append("--no-session-persistence")
        if spec.resume_id:
            argv += ["--resume", spec.resume_id]
        argv += config.extra_flags
        argv += check_extra(spec.extra, self.allowed_extra, self.name)
        return argv, env

    def invocation(
        self, spec: RunSpec, config: BackendConfig, command: str, system_prompt_file: str | None
    ) -> Invocation:
        argv, env = self._options(spec, config, command, system_prompt_file)
        inv = Invocation(argv=argv, env=env)
        if prompt_via_stdin(spec.prompt):
            inv.stdin = spec.prompt.encode("utf-8", "surrogatepass")
        else:
            argv += ["--", spec.prompt]
        return inv

    def warm_invocation(
        self, spec: RunSpec, config: BackendConfig, command: str, system_prompt_file: str | None
    ) -> Invocation | None:
        """The same run, started before its prompt is known (it reads one JSON turn)."""
        argv, env = self._options(spec, config, command, system_prompt_file)
        return Invocation(argv=argv + ["--input-format", "stream-json"], env=env)

    def warm_input(self, prompt: str) -> bytes:
        """The prompt as the one stream-json user turn a warm process reads."""
        message = {"type": "user", "message": {"role": "user", "content": prompt}}
        return msgspec.json.encode(message) + b"\n"

    def decoder(self, spec: RunSpec, config: BackendConfig) -> ClaudeDecoder:
        return ClaudeDecoder(spec)
