"""Gemini CLI: `gemini -o stream-json` (JSONL events with token deltas).

gemini reads its retry budget only from settings (`general.maxAttempts`), reports retries
only on stderr, and puts the model API's status in its exit code (modulo 256) and in the
error it prints; see `gemini_settings.py` for the settings overlay.
"""

from __future__ import annotations

import re
from typing import Any, Union

import msgspec

from clinvk.adapters.backends.base import Invocation, check_extra, prompt_via_stdin
from clinvk.adapters.backends.gemini_settings import (
    HOME_ENV,
    SYSTEM_SETTINGS_ENV,
    HomeOverlays,
    SettingsOverlays,
    real_gemini_dir,
)
from clinvk.adapters.backends.limits import api_error, http_status, parse_duration
from clinvk.adapters.backends.run_files import NO_FILES, RunFiles
from clinvk.domain.config import BackendConfig
from clinvk.domain.errors import BackendFailed, bounded
from clinvk.domain.events import (
    Init,
    Message,
    Notice,
    Retry,
    StreamEvent,
    TextDelta,
    ToolResult,
    ToolUse,
    Usage,
)
from clinvk.domain.models import RunResult, RunSpec, TokenUsage
from clinvk.domain.tools import BridgeSpec

#: gemini refuses `general.maxAttempts` above this.
MAX_ATTEMPTS_LIMIT = 10

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


# Retry notices gemini 0.61.0 prints on stderr (one per failed attempt that is retried):
#   Attempt 2 failed with status 500. Retrying with backoff... <error>
#   Attempt 2 failed with 429 error (no Retry-After header). Retrying with backoff...
#   Attempt 1 failed: <message, may run over several lines>. Retrying after 5339ms...
# and `Attempt 3 failed: <message>. Max attempts reached` when it gives up (not a retry).
_ATTEMPT = re.compile(r"^Attempt (\d+) failed(?: with status (\d{3})| with (429|5xx) error)?")
_BACKOFF = re.compile(r"Retrying with backoff")
_AFTER = re.compile(r"Retrying after (\d+(?:\.\d+)?)ms")
_GAVE_UP = re.compile(r"Max attempts reached")
_ATTEMPT_MESSAGE = re.compile(r"^Attempt \d+ failed: (.*)")

# What the failure says about a limit. gemini's own classes (on stderr) say whether a 429
# is a usage quota (TerminalQuotaError: daily quota, capacity) or a short-term one.
_USAGE = re.compile(r"TerminalQuotaError|exhausted your daily quota|exhausted your capacity")
_OVERLOADED = re.compile(r"model is overloaded|MODEL_CAPACITY_EXHAUSTED", re.IGNORECASE)
_SUGGESTED = re.compile(r"Suggested retry after (\d+(?:\.\d+)?(?:ms|s|m|h))")
_RETRY_DELAY_MS = re.compile(r"retryDelayMs: (\d+)")
_CODE = re.compile(r'"code":\s*(\d{3})')
_STATUS_LINE = re.compile(r"^\s*status: (\d{3})\s*$", re.MULTILINE)


class GeminiDecoder:
    """Decodes `gemini -o stream-json` lines (and its retry notices on stderr)."""

    def __init__(
        self, spec: RunSpec, *, max_attempts: int | None = None, notice: str | None = None
    ) -> None:
        """`max_attempts`: the budget clinvk gave gemini (None: gemini's own setting);
        `notice`: something to tell the client with the init event."""
        self._spec = spec
        self._max_attempts = max_attempts
        self._notice = notice
        self._session_id: str | None = None
        self._model: str | None = spec.model
        self._text: list[str] = []
        self._result: _Result | None = None
        self._last_error: str | None = None
        #: (attempt, message) of an "Attempt N failed: ..." notice still being printed.
        self._pending: tuple[int, str] | None = None

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
            init = Init(backend_session_id=item.session_id, model=item.model)
            return [init, Notice(message=self._notice)] if self._notice else [init]
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

    def feed_stderr(self, line: bytes) -> list[StreamEvent]:
        """gemini's retry notices: one `Retry` per failed attempt it will retry."""
        text = line.decode("utf-8", "replace").strip()
        match = _ATTEMPT.match(text)
        if match is not None:
            self._pending = None
            attempt = int(match.group(1))
            status = match.group(2) or (match.group(3) if match.group(3) == "429" else None)
            message = _ATTEMPT_MESSAGE.match(text)
            if _BACKOFF.search(text) or _AFTER.search(text):
                return [self._retry(attempt, int(status) if status else None, text)]
            if message is not None and not _GAVE_UP.search(text):
                self._pending = (attempt, message.group(1))  # continues on the next lines
            return []
        if self._pending is not None:
            if _AFTER.search(text):
                attempt, message = self._pending
                self._pending = None
                return [self._retry(attempt, None, f"{message} {text}")]
            if _GAVE_UP.search(text):
                self._pending = None
        return []

    def _retry(self, attempt: int, status: int | None, text: str) -> Retry:
        after = _AFTER.search(text)
        message = text.split(". Retrying", 1)[0]
        message = _ATTEMPT_MESSAGE.sub(r"\1", message)
        return Retry(
            attempt=attempt,
            max_attempts=self._max_attempts,
            status=status,
            message=bounded(message, 500),
            delay_secs=round(float(after.group(1)) / 1000, 3) if after else None,
        )

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
        status = _api_status(message, stderr, exit_code)
        if status is None:
            raise BackendFailed("gemini", bounded(message), exit_code=exit_code, result=result)
        message = f"{message} (API status {status})"
        said = f"{message}\n{stderr}"
        limit = "usage" if status == 429 and _USAGE.search(said) else None
        raise api_error(
            "gemini", bounded(message), status=status, limit=limit,
            retry_after=_retry_after(said), overloaded=bool(_OVERLOADED.search(message)),
            exit_code=exit_code, result=result,
        )


def _api_status(message: str, stderr: str, exit_code: int) -> int | None:
    """The model API's HTTP status behind a failure: the error body's `code`, the
    `status:` of the error gemini dumps on stderr, else the exit code, which in json modes
    is the status modulo 256 (429 -> 173; ambiguous for 529 -> 17, hence last)."""
    code = _CODE.search(message)
    if code is not None and http_status(int(code.group(1))):
        return int(code.group(1))
    statuses = _STATUS_LINE.findall(stderr)
    if statuses and http_status(int(statuses[-1])):
        return int(statuses[-1])
    if exit_code > 0 and http_status(exit_code + 256):
        return exit_code + 256
    return None


def _retry_after(text: str) -> float | None:
    """Seconds gemini says to wait (the API's RetryInfo: "Suggested retry after 37s.")."""
    suggested = _SUGGESTED.search(text)
    if suggested is not None:
        return parse_duration(suggested.group(1))
    delay = _RETRY_DELAY_MS.search(text)
    return int(delay.group(1)) / 1000 if delay is not None else None


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


#: The effort as gemini 2.x's thinking budget (tokens; 24576 is the most every 2.5 model
#: takes, 8192 is the CLI's own default) and as later models' thinking level.
_THINKING_BUDGET = {"minimal": 128, "low": 1024, "medium": 8192, "high": 24576,
                    "xhigh": 24576, "max": 24576}
_THINKING_LEVEL = {"minimal": "LOW", "low": "LOW", "medium": "HIGH", "high": "HIGH",
                   "xhigh": "HIGH", "max": "HIGH"}


def thinking_settings(spec: RunSpec) -> dict | None:
    """Settings giving the run's model its thinking for the effort: a `customOverrides`
    entry matching that model (gemini has no flag for it). None without an effort, or
    without a model (the CLI's own `auto` routing picks one per call)."""
    if spec.effort is None or not spec.model:
        return None
    if spec.model.startswith("gemini-2"):
        thinking: dict = {"thinkingBudget": _THINKING_BUDGET[spec.effort]}
    else:
        thinking = {"thinkingLevel": _THINKING_LEVEL[spec.effort]}
    override = {"match": {"model": spec.model},
                "modelConfig": {"generateContentConfig": {"thinkingConfig": thinking}}}
    return {"modelConfigs": {"customOverrides": [override]}}


def bridge_settings(tools: BridgeSpec) -> dict:
    """gemini's settings for the client-tools bridge: the bridge as a trusted streamable
    HTTP MCP server (untrusted tools are left out of `-p` runs), the only MCP server it may
    use, a call timeout above the wait for a result, and, unless kept, `tools.core` listing
    only the bridge's tools (gemini names them `mcp_<server>_<tool>`), so no built-in tool
    is offered."""
    timeout_ms = int((tools.result_timeout_secs + 60) * 1000)
    settings: dict = {
        "mcpServers": {tools.server: {"httpUrl": tools.url, "trust": True,
                                      "timeout": timeout_ms}},
        "mcp": {"allowed": [tools.server]},
    }
    if not tools.builtin_tools:
        settings["tools"] = {"core": [f"mcp_{tools.server}_{name}" for name in tools.names]}
    return settings


def image_references(paths: tuple[str, ...]) -> str:
    """The prompt's tail naming each image as `@path`: gemini reads a referenced file inside
    its workspace and sends an image as inline data (spaces escaped as gemini expects)."""
    refs = " ".join("@" + path.replace(" ", "\\ ") for path in paths)
    return f"\n\nThe attached images, in order: {refs}"


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

    def session_files(self, env: dict[str, str], session_id: str) -> tuple[str, tuple[str, ...]]:
        """Where gemini keeps a session: `<.gemini>/tmp/<cwd's base name>/chats/
        session-<time>-<first 8 of id>.jsonl` (an overlay home links tmp/ to the real one);
        that file alone resumes it from the same cwd."""
        return real_gemini_dir(env), (f"tmp/*/chats/session-*-{session_id[:8]}.jsonl",)

    def __init__(
        self, overlays: SettingsOverlays | None = None, homes: HomeOverlays | None = None
    ) -> None:
        self._overlays = overlays if overlays is not None else SettingsOverlays()
        self._homes = homes if homes is not None else HomeOverlays()
        #: Why the last run's settings could not be applied.
        self._problem: str | None = None

    def _settings_env(self, settings: dict, env: dict[str, str]) -> dict[str, str]:
        """What makes gemini read `settings` over the user's own: a system settings file
        (root only), else a home overlay; nothing (and `_problem` says why) when neither."""
        self._problem = None
        path = self._overlays.path(settings, env)
        if path is not None:
            return {SYSTEM_SETTINGS_ENV: path}
        home = self._homes.path(settings, env)
        if home is not None:
            return {HOME_ENV: home}
        self._problem = f"{self._overlays.problem}; {self._homes.problem}"
        return {}

    @staticmethod
    def max_attempts(spec: RunSpec) -> int | None:
        """gemini's `general.maxAttempts` for this run (calls in all), None = its own."""
        if spec.max_retries is None:
            return None
        return min(spec.max_retries + 1, MAX_ATTEMPTS_LIMIT)

    def invocation(
        self,
        spec: RunSpec,
        config: BackendConfig,
        command: str,
        system_prompt_file: str | None,
        *,
        files: RunFiles = NO_FILES,
    ) -> Invocation:
        argv = [command, "-o", "stream-json"]
        env: dict[str, str] = {}
        attempts = self.max_attempts(spec)
        settings = thinking_settings(spec) or {}
        if attempts is not None:
            settings["general"] = {"maxAttempts": attempts}
        if spec.tools is not None:
            settings.update(bridge_settings(spec.tools))
        if settings:
            env.update(self._settings_env(settings, config.env))
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
        prompt = spec.prompt
        if files.images and files.folder is not None:
            # gemini reads `@file` only inside its workspace: add the run's own folder to it.
            argv += ["--include-directories", files.folder]
            prompt += image_references(files.images)
        inv = Invocation(argv=argv, env=env)
        if prompt_via_stdin(prompt):
            inv.stdin = prompt.encode("utf-8", "surrogatepass")
        else:
            # `-p "-x"` fails to parse; the `=` form carries any text.
            argv.append(f"--prompt={prompt}")
        return inv

    def hot_invocation(
        self, spec: RunSpec, config: BackendConfig, command: str, system_prompt_file: str | None
    ) -> Invocation | None:
        """The run as a `gemini --acp` process that takes turn after turn (hot sessions), or
        None when it needs a one-run system prompt file."""
        if system_prompt_file:
            return None
        bare = msgspec.structs.replace(spec, resume_id=None, prompt="")
        inv = self.invocation(bare, config, command, None)
        argv = [a for a in inv.argv if not a.startswith("--prompt=")]
        argv[1:3] = ["--acp"]  # in place of `-o stream-json`
        return Invocation(argv=argv, env=inv.env)

    #: A waiting `gemini --acp` process is driven turn by turn (its protocol), even when it
    #: serves a one-shot run from the warm pool.
    warm_takes_turns = True
    #: A fresh ACP process never reopens a session: gemini 0.61.0's `session/load` first
    #: starts recording the session anew under its own id, in a file named after the
    #: current minute; for a session created in that same minute this is the session's
    #: own file, whose conversation is thereby replaced by an empty one (the load then
    #: fails with "No previous sessions found", and the session is lost). A resumed turn
    #: without its hot process therefore runs `gemini -p --resume`, which appends.
    warm_resumes = False

    def warm_invocation(
        self, spec: RunSpec, config: BackendConfig, command: str, system_prompt_file: str | None
    ) -> Invocation | None:
        """The run started before its prompt is known: `gemini -p` cannot wait for one (it
        reads piped stdin only in its first 500 ms), so a pooled gemini is an ACP process,
        which opens one session for the run (`session/new`, or `session/load` to resume).
        Not for runs with client tools (their bridge URL is the run's own)."""
        if spec.tools is not None:
            return None
        return self.hot_invocation(spec, config, command, system_prompt_file)

    def hot_decoder(self, spec: RunSpec, config: BackendConfig):
        """The decoder of one turn on an ACP process (it also writes the protocol's side)."""
        from clinvk.adapters.backends.gemini_acp import GeminiAcpDecoder

        return GeminiAcpDecoder(spec)

    def hot_input(self, spec: RunSpec, decoder, first: bool) -> bytes:
        """What starts the turn: the protocol's opening on a fresh process, else the prompt."""
        return decoder.opening(first)

    def decoder(self, spec: RunSpec, config: BackendConfig) -> GeminiDecoder:
        attempts = self.max_attempts(spec)
        notices = []
        if attempts is not None and self._problem is not None:
            notices.append(f"max_retries not applied to gemini: {self._problem}")
            attempts = None
        if spec.effort is not None and not spec.model:
            notices.append("effort not applied to gemini: no model named (gemini's auto routing)")
        elif thinking_settings(spec) is not None and self._problem is not None:
            notices.append(f"effort not applied to gemini: {self._problem}")
        if spec.output_schema is not None:
            notices.append("output_schema not applied to gemini: it has no structured-output "
                           "setting; ask for JSON in the prompt")
        notice = "; ".join(notices) or None
        return GeminiDecoder(spec, max_attempts=attempts, notice=notice)
