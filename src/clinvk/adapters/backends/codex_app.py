"""codex `app-server`: one codex process taking turn after turn (hot sessions).

`codex exec` answers one turn and exits; `codex app-server` (experimental in 0.169.0) speaks
JSON-RPC lines on stdin/stdout and keeps its threads loaded, so a session's next turn is
one `turn/start` away instead of a cold `codex exec resume` (see docs/performance.md). The
first turn of a process opens the protocol (`initialize`, `initialized`, then `thread/start`
or `thread/resume`); once the thread answers, the decoder asks for `turn/start` to be
written. The turn ends with `turn/completed`, and the process waits for the next one.

Unlike `exec --json`, the app server streams the answer (`item/agentMessage/delta`), and its
token counts come per turn (`tokenUsage.last`), not summed over the thread.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from typing import Any

import msgspec

from clinvk.adapters.backends.codex import _OVERLOADED, _USAGE, codex_status, reset_in
from clinvk.adapters.backends.jsonrpc import Rpc, TurnDriver, decode, request
from clinvk.adapters.backends.limits import api_error
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

#: `app-server` options clinvk's codex flags may carry (each with a value); any other flag
#: (exec's own, e.g. `--oss`) means the run cannot use the app server.
APP_SERVER_OPTIONS = frozenset({"-c", "--config", "--enable", "--disable"})
_SANDBOX = {"read-only": "read-only", "workspace": "workspace-write", "full": "danger-full-access"}
#: Request ids of the opening exchange.
_INITIALIZE, _THREAD, _TURN = 1, 2, 3


def app_server_argv(command: str, spec: RunSpec, flags: Sequence[str]) -> list[str] | None:
    """`codex app-server` with the run's config flags, or None when a flag is exec-only.

    The run's model, sandbox, approval and effort become `-c` defaults too (the thread is
    also opened with them), so a process started for other options never matches.
    """
    argv = [command, "app-server", *_option_flags(spec)]
    items = list(flags)
    while items:
        flag = items.pop(0)
        name, has_value, _ = flag.partition("=")
        if name not in APP_SERVER_OPTIONS:
            return None
        argv.append(flag)
        if not has_value:
            if not items:
                return None
            argv.append(items.pop(0))
    return argv


def _option_flags(spec: RunSpec) -> list[str]:
    params = thread_params(spec)
    out = ["-c", 'approval_policy="never"']
    if "model" in params:
        out += ["-c", f"model={msgspec.json.encode(params['model']).decode()}"]
    if "sandbox" in params:
        out += ["-c", f'sandbox_mode="{params["sandbox"]}"']
    if spec.effort:
        out += ["-c", f"model_reasoning_effort={msgspec.json.encode(spec.effort).decode()}"]
    return out


def thread_params(spec: RunSpec) -> dict[str, Any]:
    """How the thread is opened: what exec's `-m`, `-s` and approval flags set."""
    params: dict[str, Any] = {"cwd": spec.workdir, "approvalPolicy": "never"}
    if spec.model:
        params["model"] = spec.model
    if spec.approval_mode == "none":
        params["sandbox"] = "danger-full-access"
    elif spec.sandbox_mode in _SANDBOX:
        params["sandbox"] = _SANDBOX[spec.sandbox_mode]
    return params


class CodexAppDecoder(TurnDriver):
    """Drives one turn of a codex app server and decodes its notifications."""

    def __init__(self, spec: RunSpec, *, now: Callable[[], dt.datetime] | None = None) -> None:
        super().__init__()
        self._spec = spec
        self._now = now or (lambda: dt.datetime.now().astimezone())
        self._thread: str | None = spec.resume_id
        self._model: str | None = spec.model
        self._messages: list[str] = []
        self._deltas = False
        self._usage: TokenUsage | None = None
        self._failure: str | None = None
        self._last_error: str | None = None
        self._next_id = 10

    # -- what to write -----------------------------------------------------------------

    def opening(self, first: bool) -> bytes:
        """What starts this turn: the whole opening exchange on a fresh process, else the
        turn itself."""
        if not first:
            return self._turn_start(self._next())
        params = thread_params(self._spec)
        if self._spec.resume_id:
            method = "thread/resume"
            params["threadId"] = self._spec.resume_id
        else:
            method = "thread/start"
        return (
            request(_INITIALIZE, "initialize", {"clientInfo": {"name": "clinvk", "version": "1"}})
            + b'{"jsonrpc":"2.0","method":"initialized"}\n'
            + request(_THREAD, method, params)
        )

    def _next(self) -> int:
        self._next_id += 1
        return self._next_id

    def _turn_start(self, id: int) -> bytes:
        params: dict[str, Any] = {
            "threadId": self._thread,
            "input": [{"type": "text", "text": self._spec.prompt}],
        }
        if self._spec.effort:
            params["effort"] = self._spec.effort
        return request(id, "turn/start", params)

    # -- what was read ------------------------------------------------------------------

    def feed(self, line: bytes) -> list[StreamEvent]:
        try:
            msg = decode(line)
        except msgspec.DecodeError:
            return []
        if msg.method is None:
            return self._response(msg)
        if msg.id is not None:
            # A request to us (an approval): runs use approvalPolicy "never", so refuse it.
            self._pending += msgspec.json.encode(
                {"jsonrpc": "2.0", "id": msg.id,
                 "error": {"code": -32601, "message": "not supported by clinvk"}}
            ) + b"\n"
            return []
        params = msg.params if isinstance(msg.params, dict) else {}
        return self._notification(msg.method, params)

    def _response(self, msg: Rpc) -> list[StreamEvent]:
        if msg.error is not None:
            message = (msg.error or {}).get("message") if isinstance(msg.error, dict) else None
            self._failure = str(message or msg.error)
            self._done = True
            return []
        if msg.id == _THREAD and isinstance(msg.result, dict):
            thread = msg.result.get("thread") or {}
            self._thread = thread.get("id") or self._thread
            self._model = msg.result.get("model") or self._model
            self._pending += self._turn_start(_TURN)
            return [Init(backend_session_id=self._thread, model=self._spec.model)]
        return []

    def _notification(self, method: str, params: dict[str, Any]) -> list[StreamEvent]:
        if method == "item/agentMessage/delta":
            delta = params.get("delta") or ""
            self._deltas = True
            return [TextDelta(text=delta)] if delta else []
        item = params.get("item") or {}
        kind = item.get("type")
        if method == "item/completed" and kind == "agentMessage":
            text = item.get("text") or ""
            self._messages.append(text)
            return [Message(text=text)]
        if method == "item/started" and kind == "commandExecution":
            return [ToolUse(name="shell", input={"command": item.get("command")}, id=item.get("id"))]
        if method == "item/completed" and kind == "commandExecution":
            return [ToolResult(output=item.get("aggregatedOutput") or "", id=item.get("id"),
                               is_error=(item.get("exitCode") or 0) != 0)]
        if method == "thread/tokenUsage/updated":
            last = (params.get("tokenUsage") or {}).get("last") or {}
            self._usage = TokenUsage(
                input_tokens=last.get("inputTokens") or 0,
                output_tokens=last.get("outputTokens") or 0,
                cached_tokens=last.get("cachedInputTokens") or 0,
                reasoning_tokens=last.get("reasoningOutputTokens") or 0,
            )
            return []
        if method == "error":
            error = params.get("error") or {}
            self._last_error = error.get("message") or self._last_error
            return [Notice(message=self._last_error)] if params.get("willRetry") else []
        if method == "turn/completed":
            turn = params.get("turn") or {}
            self._done = True
            if turn.get("status") != "completed":
                error = turn.get("error") or {}
                self._failure = error.get("message") or self._last_error or "turn failed"
            return [Usage(usage=self._usage or TokenUsage())]
        return []

    def feed_stderr(self, line: bytes) -> list[StreamEvent]:
        """The app server logs to stderr; nothing there is streamed."""
        return []

    def finish(self, *, exit_code: int, stderr: str, duration_ms: int) -> RunResult:
        result = RunResult(
            backend="codex",
            output=self._messages[-1] if self._messages else "",
            exit_code=exit_code,
            duration_ms=duration_ms,
            usage=self._usage or TokenUsage(),
            model=self._spec.model,
            backend_session_id=self._thread,
        )
        if self._failure is None and self._done:
            return result
        message = (
            self._failure
            or self._last_error
            or (stderr.strip().splitlines() or [""])[-1]
            or f"codex app-server exited with code {exit_code} before the turn ended"
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
