"""What the chat-style dialects (OpenAI, Anthropic) share: model routing, the rendering
of earlier turns into one prompt, and the text to stream from unified events."""

from __future__ import annotations

from typing import Literal

import msgspec

from clinvk.domain import events as ev
from clinvk.domain.config import Config
from clinvk.domain.models import PromptRequest, PromptResult

Role = Literal["system", "developer", "user", "assistant", "tool"]

#: Substrings that route a model name to a backend, in order.
_FAMILIES = (("claude", "claude"), ("gpt", "codex"), ("gemini", "gemini"))


class Turn(msgspec.Struct, frozen=True, kw_only=True):
    """One message of a chat conversation, reduced to its text."""

    role: Role
    text: str


class Route(msgspec.Struct, frozen=True, kw_only=True):
    """Where a requested model name goes."""

    backend: str
    #: The model to pass to the CLI; None = the backend's configured default.
    model: str | None


def route_model(name: str, config: Config, backends: list[str]) -> Route:
    """Map an API model name to a backend and CLI model.

    Rules, first match wins: a configured alias; `backend/model`; an exact backend name
    (its configured model); a name containing `claude` / `gpt` / `gemini`; otherwise the
    default backend, with the name passed on as its model.
    """
    alias = config.model_aliases.get(name)
    if alias:
        name = alias
    head, sep, tail = name.partition("/")
    if sep and head in backends:
        return Route(backend=head, model=tail or None)
    if name in backends:
        return Route(backend=name, model=None)
    lowered = name.lower()
    for needle, backend in _FAMILIES:
        if needle in lowered and backend in backends:
            return Route(backend=backend, model=name)
    return Route(backend=config.default_backend, model=name or None)


_encode = msgspec.json.Encoder().encode


def render_conversation(turns: list[Turn]) -> str:
    """One prompt carrying a whole conversation, in a layout that cannot be misread.

    A lone user turn is sent verbatim. Otherwise the earlier turns are written as a JSON
    array (so no message text can fake a turn boundary) and the last user turn follows
    verbatim, always last. System turns sent after that user turn (Claude Code sends one
    after the user's first message) come, as their own JSON array, just before it.
    """
    if not turns:
        return ""
    latest = _latest_user(turns)
    if latest is None:
        earlier, last, after = turns, None, []
    else:
        earlier, last, after = turns[:latest], turns[latest], turns[latest + 1 :]
    if last is not None and not earlier and not after:
        return last.text
    parts: list[str] = []
    if earlier:
        parts += ["The conversation so far, as a JSON array of messages, oldest first:",
                  _history(earlier), ""]
    if after:
        parts += ["System messages sent after the latest user message, as a JSON array:",
                  _history(after), ""]
    if last is not None:
        parts += ["Reply to this latest user message:", last.text]
    else:
        parts += ["Continue the conversation as the assistant."]
    return "\n".join(parts)


def _latest_user(turns: list[Turn]) -> int | None:
    """Index of the user turn the reply answers: the last one, if only system turns follow."""
    for i in range(len(turns) - 1, -1, -1):
        if turns[i].role == "user":
            return i
        if turns[i].role != "system":
            return None
    return None


def _history(turns: list[Turn]) -> str:
    return _encode([{"role": t.role, "content": t.text} for t in turns]).decode()


def tool_call_text(name: str, call_id: str | None, arguments: str) -> str:
    """How a call of a client's tool, made by an earlier model turn, reads in the prompt
    (`arguments` is the call's input as JSON text)."""
    ident = f" (id {call_id})" if call_id else ""
    return f"Tool call {name}{ident} with input: {arguments}"


def tool_result_text(call_id: str | None, text: str, *, is_error: bool = False) -> str:
    """How the result of a client's tool call reads in the prompt."""
    ident = f" for {call_id}" if call_id else ""
    error = " (error)" if is_error else ""
    return f"Tool result{ident}{error}: {text}"


def new_turns(turns: list[Turn]) -> list[Turn]:
    """The turns after the last assistant turn: what a continued session has not seen."""
    for i in range(len(turns) - 1, -1, -1):
        if turns[i].role == "assistant":
            return turns[i + 1 :]
    return turns


def answered_model(requested: str, request: PromptRequest, result: PromptResult) -> str:
    """The model name a chat answer reports: the one the client asked for, unless a
    fallback answered — then the model that really answered (or its backend's name)."""
    if result.backend == request.backend:
        return requested
    return result.model or result.backend


def fallback_answer(requested: str, request: PromptRequest, event: ev.Fallback) -> tuple[str, str]:
    """(backend, model name a chat answer reports) once a run moves on to `event.next`,
    by the rule of `answered_model`."""
    backend, _, model = event.next.partition("/")
    if backend == request.backend:
        return backend, requested
    return backend, model or backend


class TextStream:
    """Picks the text to stream from unified events: every delta as it comes; a whole
    message only when no delta carried it (codex prints whole messages only)."""

    def __init__(self) -> None:
        self._deltas_since_message = False

    def text(self, event: ev.StreamEvent) -> str | None:
        """The text this event adds to the answer, or None."""
        if isinstance(event, ev.TextDelta):
            self._deltas_since_message = True
            return event.text or None
        if isinstance(event, ev.Message):
            streamed = self._deltas_since_message
            self._deltas_since_message = False
            return None if streamed else (event.text or None)
        return None
