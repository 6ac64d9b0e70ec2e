"""gemini `--acp`: one gemini process taking turn after turn (hot sessions).

`gemini -p` answers one prompt and exits; `gemini --acp` speaks the Agent Client Protocol
(JSON-RPC lines on stdin/stdout) and keeps its sessions loaded, so a session's next turn is
one `session/prompt` away instead of a cold `gemini --resume`. The first turn of a process
opens the protocol (`initialize`, then `session/new`, or `session/load` for an existing
session, which also reopens sessions that `gemini -p` created); once the session answers,
the decoder asks for `session/prompt` to be written. The answer to `session/prompt` ends the
turn; text comes before it as `session/update` notifications (`agent_message_chunk`).
"""

from __future__ import annotations

from typing import Any

import msgspec

from clinvk.adapters.backends.jsonrpc import Rpc, TurnDriver, decode, request
from clinvk.adapters.backends.limits import api_error, http_status
from clinvk.domain.errors import BackendFailed, bounded
from clinvk.domain.events import (
    Init,
    StreamEvent,
    TextDelta,
    ToolResult,
    ToolUse,
    Usage,
)
from clinvk.domain.models import RunResult, RunSpec, TokenUsage

#: Request ids of the opening exchange.
_INITIALIZE, _SESSION, _PROMPT = 1, 2, 3


class GeminiAcpDecoder(TurnDriver):
    """Drives one turn of a gemini ACP process and decodes its updates."""

    def __init__(self, spec: RunSpec) -> None:
        super().__init__()
        self._spec = spec
        self._session: str | None = spec.resume_id
        self._model: str | None = spec.model
        self._text: list[str] = []
        self._usage: TokenUsage | None = None
        self._failure: str | None = None
        self._status: int | None = None
        self._prompt_id = _PROMPT
        self._next_id = 10
        #: Whether this turn's prompt was sent: `session/load` first replays the session's
        #: history as updates, which are not this turn's answer.
        self._prompting = False

    def opening(self, first: bool) -> bytes:
        """What starts this turn: the whole opening on a fresh process, else the prompt."""
        if not first:
            self._next_id += 1
            self._prompt_id = self._next_id
            self._prompting = True
            return self._prompt(self._prompt_id)
        params: dict[str, Any] = {"cwd": self._spec.workdir, "mcpServers": []}
        if self._spec.resume_id:
            params["sessionId"] = self._spec.resume_id
            method = "session/load"
        else:
            method = "session/new"
        return request(
            _INITIALIZE, "initialize", {"protocolVersion": 1, "clientCapabilities": {}}
        ) + request(_SESSION, method, params)

    def _prompt(self, id: int) -> bytes:
        return request(id, "session/prompt", {
            "sessionId": self._session,
            "prompt": [{"type": "text", "text": self._spec.prompt}],
        })

    def feed(self, line: bytes) -> list[StreamEvent]:
        try:
            msg = decode(line)
        except msgspec.DecodeError:
            return []
        if msg.method is None:
            return self._response(msg)
        params = msg.params if isinstance(msg.params, dict) else {}
        if msg.id is not None:
            self._pending += self._answer(msg.id, msg.method, params)
            return []
        if msg.method == "session/update" and self._prompting:
            return self._update(params.get("update") or {})
        return []

    def _answer(self, id: Any, method: str, params: dict[str, Any]) -> bytes:
        """Answer a request from gemini: a tool permission is declined (what `-p` does in
        the default approval mode: it never offers such tools), anything else refused."""
        if method == "session/request_permission":
            options = params.get("options") or []
            reject = next(
                (o.get("optionId") for o in options if str(o.get("kind", "")).startswith("reject")),
                None,
            )
            outcome = (
                {"outcome": "selected", "optionId": reject} if reject else {"outcome": "cancelled"}
            )
            body: dict[str, Any] = {"jsonrpc": "2.0", "id": id, "result": {"outcome": outcome}}
        else:
            body = {"jsonrpc": "2.0", "id": id,
                    "error": {"code": -32601, "message": "not supported by clinvk"}}
        return msgspec.json.encode(body) + b"\n"

    def _response(self, msg: Rpc) -> list[StreamEvent]:
        if msg.error is not None:
            error = msg.error if isinstance(msg.error, dict) else {}
            self._failure = str(error.get("message") or msg.error)
            code = error.get("code")
            self._status = http_status(code) if isinstance(code, int) else None
            self._done = True
            return []
        result = msg.result if isinstance(msg.result, dict) else {}
        if msg.id == _SESSION:
            self._session = result.get("sessionId") or self._session
            self._pending += self._prompt(_PROMPT)
            self._prompting = True
            return [Init(backend_session_id=self._session, model=self._spec.model)]
        if msg.id == self._prompt_id:
            self._done = True
            quota = (result.get("_meta") or {}).get("quota") or {}
            count = quota.get("token_count") or {}
            # The model that really answered, as `gemini -p` reports it (stats.models).
            answered = [u.get("model") for u in quota.get("model_usage") or []
                        if isinstance(u, dict) and u.get("model")]
            if answered:
                self._model = answered[0]
            self._usage = TokenUsage(
                input_tokens=count.get("input_tokens") or 0,
                output_tokens=count.get("output_tokens") or 0,
            )
            if result.get("stopReason") not in ("end_turn", "max_tokens", "max_turn_requests"):
                self._failure = f"gemini stopped: {result.get('stopReason')}"
            return [Usage(usage=self._usage)]
        return []

    def _update(self, update: dict[str, Any]) -> list[StreamEvent]:
        kind = update.get("sessionUpdate")
        if kind == "agent_message_chunk":
            content = update.get("content") or {}
            text = content.get("text") or "" if content.get("type") == "text" else ""
            if text:
                self._text.append(text)
                return [TextDelta(text=text)]
            return []
        if kind == "tool_call":
            return [ToolUse(name=update.get("title") or update.get("kind") or "tool",
                            input=update.get("rawInput"), id=update.get("toolCallId"))]
        if kind == "tool_call_update" and update.get("status") in ("completed", "failed"):
            output = "".join(
                (c.get("content") or {}).get("text") or ""
                for c in update.get("content") or [] if isinstance(c, dict)
            )
            return [ToolResult(output=output, id=update.get("toolCallId"),
                               is_error=update.get("status") == "failed")]
        return []

    def feed_stderr(self, line: bytes) -> list[StreamEvent]:
        """gemini's stderr holds start-up noise here; retries end the prompt as errors."""
        return []

    def finish(self, *, exit_code: int, stderr: str, duration_ms: int) -> RunResult:
        result = RunResult(
            backend="gemini",
            output="".join(self._text),
            exit_code=exit_code,
            duration_ms=duration_ms,
            usage=self._usage or TokenUsage(),
            model=self._model,
            backend_session_id=self._session,
        )
        if self._failure is None and self._done:
            return result
        message = self._failure or (
            stderr.strip().splitlines() or [f"gemini --acp exited with code {exit_code}"]
        )[-1]
        if self._status is None:
            raise BackendFailed("gemini", bounded(message), exit_code=exit_code, result=result)
        raise api_error(
            "gemini", bounded(f"{message} (API status {self._status})"), status=self._status,
            limit=None, exit_code=exit_code, result=result,
        )
