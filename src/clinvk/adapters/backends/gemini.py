"""Gemini CLI: `gemini -o stream-json` (JSONL events with token deltas)."""

from __future__ import annotations

from typing import Any, Union

import msgspec

from clinvk.adapters.backends.base import Invocation, check_extra, prompt_via_stdin
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
from clinvk.domain.models import RunResult, RunSpec, TokenUsage

_APPROVAL = {"auto": "auto_edit", "none": "yolo", "always": "default"}


class _ModelStats(msgspec.Struct):
    total_tokens: int = 0


class _Stats(msgspec.Struct):
    input_tokens: int = 0
    output_tokens: int = 0
    cached: int = 0
    models: dict[str, _ModelStats] = {}


class _ErrorBody(msgspec.Struct):
    type: str = ""
    message: str = ""


class _Init(msgspec.Struct, tag="init", tag_field="type"):
    session_id: str | None = None
    model: str | None = None


class _Message(msgspec.Struct, tag="message", tag_field="type"):
    role: str = ""
    content: str = ""
    delta: bool = False


class _ToolUse(msgspec.Struct, tag="tool_use", tag_field="type"):
    tool_name: str = ""
    tool_id: str | None = None
    parameters: Any = None


class _ToolResult(msgspec.Struct, tag="tool_result", tag_field="type"):
    tool_id: str | None = None
    status: str = ""
    output: Any = None


class _Error(msgspec.Struct, tag="error", tag_field="type"):
    severity: str = ""
    message: str = ""


class _Result(msgspec.Struct, tag="result", tag_field="type"):
    status: str = ""
    error: _ErrorBody | None = None
    stats: _Stats = msgspec.field(default_factory=_Stats)


_Line = Union[_Init, _Message, _ToolUse, _ToolResult, _Error, _Result]
_decode = msgspec.json.Decoder(_Line).decode


class GeminiDecoder:
    """Decodes `gemini -o stream-json` lines."""

    def __init__(self, spec: RunSpec) -> None:
        self._spec = spec
        self._session_id: str | None = None
        self._model: str | None = spec.model
        self._text: list[str] = []
        self._result: _Result | None = None
        self._last_error: str | None = None

    def feed(self, line: bytes) -> list[StreamEvent]:
        try:
            item = _decode(line)
        except msgspec.DecodeError:
            return []
        if isinstance(item, _Message):
            if item.role != "assistant":
                return []
            self._text.append(item.content)
            if item.delta:
                return [TextDelta(text=item.content)] if item.content else []
            return [Message(text=item.content)]
        if isinstance(item, _Init):
            self._session_id = item.session_id
            self._model = item.model or self._model
            return [Init(backend_session_id=item.session_id, model=item.model)]
        if isinstance(item, _ToolUse):
            return [ToolUse(name=item.tool_name, input=item.parameters, id=item.tool_id)]
        if isinstance(item, _ToolResult):
            out = item.output if isinstance(item.output, str) else ""
            return [ToolResult(output=out, id=item.tool_id, is_error=item.status == "error")]
        if isinstance(item, _Error):
            self._last_error = item.message
            return [Notice(message=item.message)]
        self._result = item
        # The key of stats.models is the model that really answered (the API's modelVersion).
        answered = [name for name, s in item.stats.models.items() if s.total_tokens > 0]
        if answered:
            self._model = answered[0]
        return [Usage(usage=self._usage())]

    def _usage(self) -> TokenUsage:
        s = self._result.stats if self._result else _Stats()
        return TokenUsage(
            input_tokens=s.input_tokens, output_tokens=s.output_tokens, cached_tokens=s.cached
        )

    def finish(self, *, exit_code: int, stderr: str, duration_ms: int) -> RunResult:
        r = self._result
        result = RunResult(
            backend="gemini",
            output="".join(self._text),
            exit_code=exit_code,
            duration_ms=duration_ms,
            usage=self._usage(),
            model=self._model,
            backend_session_id=self._session_id,
        )
        if r is not None and r.status == "success" and exit_code == 0:
            return result
        if r is not None and r.error is not None and r.error.message:
            message = r.error.message
        else:
            message = _stderr_error(stderr) or self._last_error or "gemini ended without a result"
        # In json modes gemini exits with the API's HTTP status modulo 256.
        if 400 <= exit_code + 256 <= 599:
            message = f"{message} (API status {exit_code + 256})"
        raise BackendFailed("gemini", bounded(message), exit_code=exit_code, result=result)


_NOISE = (
    "Warning: 256-color",
    "Warning: True color",
    "Ripgrep is not available",
    "[STARTUP]",
    "YOLO mode is enabled",
    "Loaded cached credentials",
)


def _stderr_error(stderr: str) -> str:
    lines = [
        ln
        for ln in stderr.splitlines()
        if ln.strip() and not ln.lstrip().startswith(_NOISE) and not ln.startswith("    at ")
    ]
    return "\n".join(lines[-10:])


class GeminiBackend:
    """Google Gemini CLI."""

    name = "gemini"
    env_prefixes = ("GEMINI_", "GOOGLE_")
    allowed_extra = {
        "--include-directories": True,
        "--approval-mode": True,
        "--allowed-tools": True,
        "-y": False,
        "--yolo": False,
        "-e": True,
        "--extensions": True,
    }

    def invocation(
        self, spec: RunSpec, config: BackendConfig, command: str, system_prompt_file: str | None
    ) -> Invocation:
        argv = [command, "-o", "stream-json"]
        env: dict[str, str] = {}
        if spec.model:
            argv += ["-m", spec.model]
        if spec.approval_mode in _APPROVAL:
            argv += ["--approval-mode", _APPROVAL[spec.approval_mode]]
        if config.allowed_tools:
            argv += ["--allowed-tools", ",".join(config.allowed_tools)]
        if spec.resume_id:
            argv += ["--resume", spec.resume_id]
        if system_prompt_file:
            env["GEMINI_SYSTEM_MD"] = system_prompt_file
        argv += config.extra_flags
        argv += check_extra(spec.extra, self.allowed_extra, self.name)
        inv = Invocation(argv=argv, env=env)
        if prompt_via_stdin(spec.prompt):
            inv.stdin = spec.prompt.encode("utf-8", "surrogatepass")
        else:
            # `-p "-x"` fails to parse; the `=` form carries any text.
            argv.append(f"--prompt={spec.prompt}")
        return inv

    def decoder(self, spec: RunSpec, config: BackendConfig) -> GeminiDecoder:
        return GeminiDecoder(spec)
