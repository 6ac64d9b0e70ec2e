"""The unified stream events every backend's output is decoded into.

One tagged union (`type` field), so translators match on classes, never on dict keys.
"""

from __future__ import annotations

from typing import Any, Union

import msgspec

from clinvk.domain.models import StopReason, TokenUsage


class _Event(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    pass


class Init(_Event, tag="init"):
    """The CLI started a (new or resumed) session."""

    backend_session_id: str | None = None
    model: str | None = None
    #: clinvk's own session id; filled in by the prompt service.
    session_id: str | None = None


class TextDelta(_Event, tag="delta"):
    """A piece of answer text, as soon as the CLI printed it."""

    text: str


class Message(_Event, tag="message"):
    """A complete assistant message (CLIs that do not stream tokens send only this)."""

    text: str


class ToolUse(_Event, tag="tool_use"):
    """The agent called a tool."""

    name: str
    input: Any = None
    id: str | None = None


class ToolResult(_Event, tag="tool_result"):
    """A tool returned."""

    output: str = ""
    id: str | None = None
    is_error: bool = False


class Usage(_Event, tag="usage"):
    """Token usage reported by the CLI."""

    usage: TokenUsage
    cumulative: bool = False
    #: The run's usage up to now, reported mid-run (the model asked for tools); the run
    #: goes on and its final usage follows.
    so_far: bool = False


class Notice(_Event, tag="notice"):
    """Something the CLI reported that is not an answer (retry notices, warnings)."""

    message: str


class Done(_Event, tag="done"):
    """The run finished and its session was updated (emitted by the prompt service)."""

    exit_code: int
    duration_ms: int
    usage: TokenUsage = TokenUsage()
    stop_reason: StopReason = "end"
    session_id: str | None = None
    model: str | None = None


class Retry(_Event, tag="retry"):
    """The CLI is retrying a failed model-API call (it reported the attempt)."""

    attempt: int
    #: Most attempts the CLI will make, when it said.
    max_attempts: int | None = None
    #: The model API's HTTP status, when known.
    status: int | None = None
    message: str = ""
    #: Seconds until the next attempt, when the CLI said.
    delay_secs: float | None = None


class Fallback(_Event, tag="fallback"):
    """A run failed before any text was sent and the request moves to the next backend."""

    #: `backend` or `backend/model` that failed, and why.
    failed: str
    reason: str
    code: str
    #: `backend` or `backend/model` tried next.
    next: str


class Error(_Event, tag="error"):
    """The run failed."""

    message: str
    code: str = "backend_failed"


StreamEvent = Union[
    Init, TextDelta, Message, ToolUse, ToolResult, Usage, Notice, Retry, Fallback, Done, Error
]
