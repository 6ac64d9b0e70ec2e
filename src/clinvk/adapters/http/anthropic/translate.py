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
    AnthropicOutputConfig,
    AnthropicTextBlock,
    AnthropicThinking,
    AnthropicUsage,
    ClinvkOptions,
)
from clinvk.adapters.http.images import ImageSlots
from clinvk.domain.chat import Turn, new_turns, render_conversation, route_model
from clinvk.domain.config import Config
from clinvk.domain.errors import InvalidRequest
from clinvk.domain.models import Effort, PromptRequest, StopReason, TokenUsage

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
#: Tokens count_tokens adds per image: Anthropic's formula (width x height / 750) for the
#: largest image it takes without resizing (about 1.15 megapixels).
TOKENS_PER_IMAGE = 1600

#: `output_config.effort` values -> the domain's effort.
_EFFORTS: dict[str, Effort] = {
    "minimal": "minimal", "low": "low", "medium": "medium", "high": "high",
    "xhigh": "xhigh", "max": "max",
}


def message_id() -> str:
    """A fresh `msg_...` id."""
    return "msg_" + uuid.uuid4().hex[:24]


def system_prompt(system: str | list[AnthropicBlockParam] | None) -> str | None:
    """The `system` field as one prompt, or None when it has no text."""
    if system is None:
        return None
    text = system if isinstance(system, str) else system_text(system)
    return text or None


def conversation(
    messages: list[AnthropicMessageParam], slots: ImageSlots | None = None
) -> list[Turn]:
    """The messages reduced to text turns, system turns kept in place.

    Assistant and system turns left without text (only thinking) are dropped; a user turn
    without text is an error, as on Anthropic's API.
    """
    if not messages:
        raise InvalidRequest("messages: at least one message is required", field="messages")
    turns = []
    for i, message in enumerate(messages):
        text = content_text(message.content, f"messages.{i}.content", slots)
        if not text.strip():
            if message.role != "user":
                continue
            raise InvalidRequest(
                f"messages.{i}: user messages must have non-empty text content",
                field=f"messages.{i}",
            )
        turns.append(Turn(role=message.role, text=text))
    return turns


def prompt_text(
    body: AnthropicMessagesRequest, options: ClinvkOptions, slots: ImageSlots | None = None
) -> str:
    """The prompt for the CLI: the whole conversation, or only the new user turn(s) when a
    clinvk session already holds the earlier ones (as in the OpenAI dialect)."""
    turns = conversation(body.messages, slots)
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


def estimate_input_tokens(body: AnthropicCountTokensRequest, config: Config) -> int:
    """count_tokens' estimate: characters / 4 (rounded up) over the rendered prompt, the
    system prompt and the tools' JSON, the text a CLI would be given plus the schemas a
    real model would read, and TOKENS_PER_IMAGE per image."""
    system = system_prompt(body.system) or ""
    tools = _encode(body.tools).decode() if body.tools else ""
    slots = ImageSlots(config.server)
    prompt, images = slots.finish(render_conversation(conversation(body.messages, slots)))
    chars = len(prompt) + len(system) + len(tools)
    return max(1, -(-chars // CHARS_PER_TOKEN)) + TOKENS_PER_IMAGE * len(images)


def effort(
    output_config: AnthropicOutputConfig | None, thinking: AnthropicThinking | None
) -> Effort | None:
    """The reasoning effort a request asks for: `output_config.effort`, else one read
    from `thinking` (a budget's size; disabled = minimal; adaptive = the CLI's default)."""
    if output_config is not None and output_config.effort is not None:
        level = _EFFORTS.get(output_config.effort)
        if level is None:
            raise InvalidRequest(
                f"output_config.effort: Input should be one of {', '.join(_EFFORTS)}",
                field="output_config.effort",
            )
        return level
    if thinking is None:
        return None
    if thinking.type == "disabled":
        return "minimal"
    if thinking.type == "enabled" and thinking.budget_tokens:
        budget = thinking.budget_tokens
        return "low" if budget < 4096 else "medium" if budget < 16384 else "high"
    return None


def output_schema(output_config: AnthropicOutputConfig | None) -> dict | None:
    """The JSON Schema of `output_config.format` (`{"type": "json_schema", "schema": ...}`)."""
    fmt = output_config.format if output_config is not None else None
    if not fmt:
        return None
    schema = fmt.get("schema")
    if fmt.get("type") != "json_schema" or not isinstance(schema, dict):
        raise InvalidRequest(
            'output_config.format: send {"type": "json_schema", "schema": {...}}',
            field="output_config.format",
        )
    return schema


def to_prompt_request(
    body: AnthropicMessagesRequest, config: Config, backends: list[str]
) -> PromptRequest:
    """The domain request for an Anthropic Messages request."""
    options = body.clinvk or ClinvkOptions()
    route = route_model(body.model, config, backends)
    metadata = dict(body.metadata) if body.metadata else {}
    slots = ImageSlots(config.server)
    prompt, images = slots.finish(prompt_text(body, options, slots))
    return PromptRequest(
        backend=route.backend,
        model=route.model,
        prompt=prompt,
        images=images,
        effort=options.effort or effort(body.output_config, body.thinking),
        output_schema=output_schema(body.output_config),
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
