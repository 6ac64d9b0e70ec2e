"""Codex CLI: `codex exec --json` (JSONL events; no token deltas, whole messages only)."""

from __future__ import annotations

import json
from typing import Union

import msgspec

from clinvk.adapters.backends.base import Invocation, check_extra, prompt_via_stdin
from clinvk.domain.config import BackendConfig
from clinvk.domain.errors import BackendFailed, bounded
from clinvk.domain.events import (
    Init,
    Message,
    Notice,
    StreamEvent,
    ToolResult,
    ToolUse,
    Usage,
)
from clinvk.domain.models import RunResult, RunSpec, TokenUsage

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


class CodexDecoder:
    """Decodes `codex exec --json` lines."""

    def __init__(self, spec: RunSpec) -> None:
        self._spec = spec
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
            return [Init(backend_session_id=item.thread_id, model=self._spec.model)]
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
            return [Notice(message=item.message)]
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
            raise BackendFailed("codex", bounded(message), exit_code=exit_code, result=result)
        return result


def _stderr_error(stderr: str) -> str:
    lines = [
        ln
        for ln in stderr.splitlines()
        if ln.strip() and not ln.startswith(("Reading additional input", "Reading prompt"))
    ]
    return "\n".join(lines[-10:])


def _toml_string(value: str) -> str:
    # A JSON string is a valid TOML basic string for everything json.dumps emits.
    return json.dumps(value)


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
        argv += config.extra_flags
        argv += check_extra(spec.extra, self.allowed_extra, self.name)
        if spec.resume_id:
            argv += ["resume", spec.resume_id]
        return argv

    def invocation(
        self, spec: RunSpec, config: BackendConfig, command: str, system_prompt_file: str | None
    ) -> Invocation:
        argv = self._options(spec, config, command, system_prompt_file)
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
        Not for resumed runs: `resume` does not read its prompt from stdin."""
        if spec.resume_id:
            return None
        return Invocation(argv=self._options(spec, config, command, system_prompt_file) + ["-"])

    def warm_input(self, prompt: str) -> bytes:
        """The prompt as raw stdin text."""
        return prompt.encode("utf-8", "surrogatepass")

    def decoder(self, spec: RunSpec, config: BackendConfig) -> CodexDecoder:
        return CodexDecoder(spec)


