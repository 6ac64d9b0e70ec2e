"""OpenAI chat request -> domain PromptRequest, and domain results -> OpenAI wire values."""

from __future__ import annotations

import msgspec

from clinvk.adapters.http.openai.schemas import (
    FinishReason,
    OpenAIAssistantMessage,
    OpenAIAudioPart,
    OpenAIChatRequest,
    OpenAICompletionTokensDetails,
    OpenAIContent,
    OpenAIDeveloperMessage,
    OpenAIFilePart,
    OpenAIImagePart,
    OpenAIMessage,
    OpenAIPromptTokensDetails,
    OpenAIRefusalPart,
    OpenAISystemMessage,
    OpenAITextPart,
    OpenAIUsage,
)
from clinvk.domain.chat import Turn, new_turns, render_conversation, route_model
from clinvk.domain.config import Config
from clinvk.domain.errors import InvalidRequest
from clinvk.domain.models import PromptRequest, StopReason, TokenUsage

#: Separator between the text parts of one message (parts read like paragraphs).
PART_SEPARATOR = "\n"
#: Separator between system/developer messages in the system prompt.
SYSTEM_SEPARATOR = "\n\n"

_UNCARRIED = {
    OpenAIImagePart: "an image",
    OpenAIAudioPart: "an audio",
    OpenAIFilePart: "a file",
}

_FINISH: dict[StopReason, FinishReason] = {
    "end": "stop",
    "cancelled": "stop",
    "max_tokens": "length",
    "max_turns": "length",
}

_encode = msgspec.json.Encoder().encode


def content_text(content: OpenAIContent | None, where: str) -> str:
    """The text of a message's content; a part clinvk cannot carry is a 400 naming it."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    texts: list[str] = []
    for j, part in enumerate(content):
        if isinstance(part, OpenAITextPart):
            texts.append(part.text)
        elif isinstance(part, OpenAIRefusalPart):
            texts.append(part.refusal)
        else:
            param = f"{where}.content[{j}]"
            raise InvalidRequest(
                f"{param} is {_UNCARRIED[type(part)]} part ({part.__struct_config__.tag!r}); "
                "the CLIs behind clinvk take text only, so send this content as text",
                field=param,
            )
    return PART_SEPARATOR.join(texts)


def message_text(message: OpenAIMessage, where: str) -> str:
    """All the text one message carries (an assistant's tool calls as a JSON line)."""
    text = content_text(message.content, where)
    if isinstance(message, OpenAIAssistantMessage):
        if not text and message.refusal:
            text = message.refusal
        if message.tool_calls:
            calls = "Tool calls: " + _encode(message.tool_calls).decode()
            text = f"{text}\n{calls}" if text else calls
    return text


def split_messages(messages: list[OpenAIMessage]) -> tuple[str | None, list[Turn]]:
    """The system prompt (system and developer messages, in order) and the other turns."""
    system: list[str] = []
    turns: list[Turn] = []
    for i, message in enumerate(messages):
        text = message_text(message, f"messages[{i}]")
        if isinstance(message, (OpenAISystemMessage, OpenAIDeveloperMessage)):
            system.append(text)
        else:
            turns.append(Turn(role=message.__struct_config__.tag, text=text))
    return SYSTEM_SEPARATOR.join(system) or None, turns


def to_prompt_request(
    body: OpenAIChatRequest, *, config: Config, backends: list[str]
) -> PromptRequest:
    """Translate a chat completion request into the domain's PromptRequest."""
    if body.n is not None and body.n > 1:
        raise InvalidRequest(
            "n > 1 is not supported: each request runs the CLI once", field="n"
        )
    if "\x00" in body.model:  # it may become a CLI argument, where NUL cannot go
        raise InvalidRequest("model must not contain a NUL character", field="model")
    route = route_model(body.model, config, backends)
    system_prompt, turns = split_messages(body.messages)
    options = body.clinvk
    session_id = options.session_id if options else None
    if session_id:
        turns = new_turns(turns)
        if not turns:
            raise InvalidRequest(
                "with clinvk.session_id the messages must end with the new user message "
                "(the session already holds the earlier turns)",
                field="messages",
            )
    prompt = render_conversation(turns)
    if not prompt.strip():
        raise InvalidRequest("messages carry no text to send", field="messages")
    return PromptRequest(
        backend=route.backend,
        model=route.model,
        prompt=prompt,
        system_prompt=system_prompt,
        max_tokens=body.max_completion_tokens or body.max_tokens,
        metadata=dict(body.metadata or {}),
        session_id=session_id,
        workdir=options.workdir if options else None,
        approval_mode=options.approval_mode if options else "default",
        sandbox_mode=options.sandbox_mode if options else "default",
        max_turns=options.max_turns if options else None,
        ephemeral=options.ephemeral if options else False,
        max_retries=options.max_retries if options else None,
        fallback=list(options.fallback) if options else [],
    )


def finish_reason(stop: StopReason) -> FinishReason:
    """OpenAI's finish_reason for a domain stop reason (`length` when a limit cut it short)."""
    return _FINISH[stop]


def usage(tokens: TokenUsage) -> OpenAIUsage:
    """OpenAI usage from the CLI's real counts (input already includes cached tokens)."""
    return OpenAIUsage(
        prompt_tokens=tokens.input_tokens,
        completion_tokens=tokens.output_tokens,
        total_tokens=tokens.input_tokens + tokens.output_tokens,
        prompt_tokens_details=OpenAIPromptTokensDetails(cached_tokens=tokens.cached_tokens),
        completion_tokens_details=OpenAICompletionTokensDetails(
            reasoning_tokens=tokens.reasoning_tokens
        ),
    )
