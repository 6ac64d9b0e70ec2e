"""Anthropic Messages requests to domain PromptRequests, and domain results back to
Anthropic's message shape. Pure functions: no I/O, no Starlette."""

from __future__ import annotations

import uuid

from clinvk.adapters.http.anthropic.schemas import (
    AnthropicBlockParam,
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

#: Blocks from earlier turns that carry no text for the CLI and are dropped silently
#: (clients echo a previous answer's thinking back as it came).
DROPPED_BLOCKS = frozenset({"thinking", "redacted_thinking"})

#: Text blocks of one message (or of `system`) are joined with a newline, so one block's
#: last word never runs into the next block's first (as the OpenAI dialect joins parts).
BLOCK_SEPARATOR = "\n"

_STOP_REASONS: dict[StopReason, str] = {
    "end": "end_turn",
    "max_tokens": "max_tokens",
    # The agent hit its turn limit: "stopped on a limit", the nearest Anthropic reason.
    "max_turns": "max_tokens",
    "cancelled": "end_turn",
}


def message_id() -> str:
    """A fresh `msg_...` id."""
    return "msg_" + uuid.uuid4().hex[:24]


def _texts(blocks: list[AnthropicBlockParam], where: str) -> list[str]:
    texts = []
    for j, block in enumerate(blocks):
        if block.type == "text":
            if block.text is None:
                raise InvalidRequest(f"{where}.{j}.text: Field required", field=f"{where}.{j}.text")
            if block.text:
                texts.append(block.text)
        elif block.type not in DROPPED_BLOCKS or where == "system":
            raise InvalidRequest(
                f"{where}.{j}: {block.type} blocks are not supported; the CLIs behind clinvk "
                "take text only, so send this content as a text block",
                field=f"{where}.{j}",
            )
    return texts


def system_prompt(system: str | list[AnthropicBlockParam] | None) -> str | None:
    """The `system` field as one prompt, or None when it has no text."""
    if system is None:
        return None
    text = system if isinstance(system, str) else BLOCK_SEPARATOR.join(_texts(system, "system"))
    return text or None


def conversation(messages: list[AnthropicMessageParam]) -> list[Turn]:
    """The messages reduced to text turns.

    Assistant turns left without text (only thinking) are dropped; a user turn without
    text is an error, as on Anthropic's API.
    """
    if not messages:
        raise InvalidRequest("messages: at least one message is required", field="messages")
    turns = []
    for i, message in enumerate(messages):
        if isinstance(message.content, str):
            text = message.content
        else:
            text = BLOCK_SEPARATOR.join(_texts(message.content, f"messages.{i}.content"))
        if not text.strip():
            if message.role == "assistant":
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
        if not turns or body.messages[-1].role != "user":
            raise InvalidRequest(
                "messages: with clinvk.session_id the messages must end with the new user "
                "message (the session already holds the earlier turns)",
                field="messages",
            )
    return render_conversation(turns)


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
