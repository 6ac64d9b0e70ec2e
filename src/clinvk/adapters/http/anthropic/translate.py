"""Anthropic Messages requests to domain PromptRequests, and domain results back to
Anthropic's message shape. Pure functions: no I/O, no Starlette."""

from __future__ import annotations

import uuid

import msgspec

from clinvk.adapters.http.anthropic.blocks import content_text, system_text
from clinvk.adapters.http.anthropic.schemas import (
    AnthropicBlockParam,
    AnthropicCountTokensRequest,
    AnthropicMessage,
    AnthropicMessageParam,
    AnthropicMessagesRequest,
    AnthropicTextBlock,
    AnthropicUsage,
    ClinvkOptions,
)
from clinvk.domain.chat import Turn, new_turns, render_conversation, route_model
from clinvk.domain.config import Config
from clinvk.domain.errors import InvalidRequest
from clinvk.domain.models import PromptRequest, StopReason, TokenUsage

_encode = msgspec.json.Encoder().encode

_STOP_REASONS: dict[StopReason, str] = {
    "end": "end_turn",
    "max_tokens": "max_tokens",
    # The agent hit its turn limit: "stopped on a limit", the nearest Anthropic reason.
    "max_turns": "max_tokens",
    "cancelled": "end_turn",
}

#: Characters per token of the count_tokens estimate (the usual rule of thumb for
#: English text and code with Claude's tokenizers).
CHARS_PER_TOKEN = 4


def message_id() -> str:
    """A fresh `msg_...` id."""
    return "msg_" + uuid.uuid4().hex[:24]


def system_prompt(system: str | list[AnthropicBlockParam] | None) -> str | None:
    """The `system` field as one prompt, or None when it has no text."""
    if system is None:
        return None
    text = system if isinstance(system, str) else system_text(system)
    return text or None


def conversation(messages: list[AnthropicMessageParam]) -> list[Turn]:
    """The messages reduced to text turns, system turns kept in place.

    Assistant and system turns left without text (only thinking) are dropped; a user turn
    without text is an error, as on Anthropic's API.
    """
    if not messages:
        raise InvalidRequest("messages: at least one message is required", field="messages")
    turns = []
    for i, message in enumerate(messages):
        text = content_text(message.content, f"messages.{i}.content")
        if not text.strip():
            if message.role != "user":
                continue
            raise InvalidRequest(
                f"messages.{i}: user messages must have non-empty text content",
                field=f"messages.{i}",
            )
        turns.append(Turn(role=message.role, text=text))
    return turns


def prompt_text(body: AnthropicMessagesRequest, options: ClinvkOptions) -> str:
    """The prompt for the CLI: the whole conversation, or only the new user turn(s) when a
    clinvk session already holds the earlier ones (as in the OpenAI dialect)."""
    turns = conversation(body.messages)
    if options.session_id:
        turns = new_turns(turns)
        replies_to = [t.role for t in turns if t.role != "system"]
        if not replies_to or replies_to[-1] != "user":
            raise InvalidRequest(
                "messages: with clinvk.session_id the messages must end with the new user "
                "message (the session already holds the earlier turns)",
                field="messages",
            )
    return render_conversation(turns)


def estimate_input_tokens(body: AnthropicCountTokensRequest) -> int:
    """count_tokens' estimate: characters / 4 (rounded up) over the rendered prompt, the
    system prompt and the tools' JSON, the text a CLI would be given plus the schemas a
    real model would read."""
    system = system_prompt(body.system) or ""
    tools = _encode(body.tools).decode() if body.tools else ""
    chars = len(render_conversation(conversation(body.messages))) + len(system) + len(tools)
    return max(1, -(-chars // CHARS_PER_TOKEN))


def to_prompt_request(
    body: AnthropicMessagesRequest, config: Config, backends: list[str]
) -> PromptRequest:
    """The domain request for an Anthropic Messages request."""
    options = body.clinvk or ClinvkOptions()
    route = route_model(body.model, config, backends)
    metadata = dict(body.metadata) if body.metadata else {}
    return PromptRequest(
        backend=route.backend,
        model=route.model,
        prompt=prompt_text(body, options),
        system_prompt=system_prompt(body.system),
        max_tokens=body.max_tokens,
        max_turns=options.max_turns,
        workdir=options.workdir,
        approval_mode=options.approval_mode,
        sandbox_mode=options.sandbox_mode,
        session_id=options.session_id,
        ephemeral=options.ephemeral,
        metadata=metadata,
        max_retries=options.max_retries,
        fallback=list(options.fallback),
    )


def stop_reason(reason: StopReason) -> str:
    """Anthropic's stop_reason for the domain's."""
    return _STOP_REASONS.get(reason, "end_turn")


def usage(tokens: TokenUsage) -> AnthropicUsage:
    """Anthropic usage: input excludes cache reads, which are reported apart when any."""
    cached = tokens.cached_tokens
    return AnthropicUsage(
        input_tokens=max(0, tokens.input_tokens - cached),
        output_tokens=tokens.output_tokens,
        cache_read_input_tokens=cached or None,
    )


def message(
    *, id: str, model: str, text: str, reason: StopReason, tokens: TokenUsage
) -> AnthropicMessage:
    """The complete `message` object of a non-streamed answer."""
    return AnthropicMessage(
        id=id,
        content=[AnthropicTextBlock(text=text)],
        model=model,
        stop_reason=stop_reason(reason),
        usage=usage(tokens),
    )
