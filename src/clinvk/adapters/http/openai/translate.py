"""OpenAI chat request -> domain PromptRequest, and domain results -> OpenAI wire values."""

from __future__ import annotations

import base64
import binascii

from clinvk.adapters.http.images import ImageSlots
from clinvk.adapters.http.openai.schemas import (
    FinishReason,
    OpenAIAssistantMessage,
    OpenAIAudioPart,
    OpenAIChatRequest,
    OpenAICompletionTokensDetails,
    OpenAIContent,
    OpenAIDeveloperMessage,
    OpenAIFilePart,
    OpenAIFunctionMessage,
    OpenAIImagePart,
    OpenAIMessage,
    OpenAIPromptTokensDetails,
    OpenAIRefusalPart,
    OpenAISystemMessage,
    OpenAITextPart,
    OpenAIToolCall,
    OpenAIToolMessage,
    OpenAIUsage,
    OpenAIUserMessage,
)
from clinvk.domain.chat import (
    Turn,
    new_turns,
    render_conversation,
    route_model,
    tool_call_text,
    tool_result_text,
)
from clinvk.domain.config import Config
from clinvk.domain.errors import InvalidRequest
from clinvk.domain.models import Effort, PromptRequest, StopReason, TokenUsage

#: Separator between the text parts of one message (parts read like paragraphs).
PART_SEPARATOR = "\n"
#: Separator between system/developer messages in the system prompt.
SYSTEM_SEPARATOR = "\n\n"
#: What `response_format: {"type": "json_object"}` adds to the system prompt (no CLI has
#: a JSON mode of its own).
JSON_OBJECT_INSTRUCTION = (
    "Answer with a single valid JSON object and nothing else: no prose, no code fences."
)

#: `reasoning_effort` values -> the domain's effort (`none` is the least there is).
EFFORTS: dict[str, Effort] = {
    "none": "minimal", "minimal": "minimal", "low": "low", "medium": "medium",
    "high": "high", "xhigh": "xhigh", "max": "max",
}

_FINISH: dict[StopReason, FinishReason] = {
    "end": "stop",
    "cancelled": "stop",
    "max_tokens": "length",
    "max_turns": "length",
}


def _refuse(param: str, what: str, why: str) -> InvalidRequest:
    return InvalidRequest(
        f"{param} is {what}; {why}, so send this content as text", field=param
    )


def file_text(part: OpenAIFilePart, param: str) -> str:
    """An inline file that is UTF-8 text, headed by its name; anything else is a 400."""
    data, name = part.file.file_data, part.file.filename or "(unnamed)"
    # Either bare base64 or a data URL (`data:text/plain;base64,...`), as the SDKs send it.
    media, _, payload = (data or "").rpartition(";base64,")
    text = None
    if data is not None and "pdf" not in media and not name.lower().endswith(".pdf"):
        try:
            text = base64.b64decode(payload, validate=True).decode()
        except (binascii.Error, ValueError):  # ValueError: non-ASCII "base64", bad UTF-8
            text = None
    if text is None:
        what = "a file part that is not inline text" if data is None else "a binary file part"
        raise _refuse(param, f"{what} ('file')",
                      "the CLIs behind clinvk take text only and clinvk has no Files API")
    return f"File {name}:\n{text}"


def content_text(
    content: OpenAIContent | None, where: str, slots: ImageSlots | None = None
) -> str:
    """The text of a message's content; an image takes a slot in `slots` (user messages);
    a part clinvk cannot carry is a 400 naming it."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    texts: list[str] = []
    for j, part in enumerate(content):
        param = f"{where}.content[{j}]"
        if isinstance(part, OpenAITextPart):
            texts.append(part.text)
        elif isinstance(part, OpenAIRefusalPart):
            texts.append(part.refusal)
        elif isinstance(part, OpenAIFilePart):
            texts.append(file_text(part, param))
        elif isinstance(part, OpenAIImagePart):
            if slots is None:
                raise _refuse(param, "an image part ('image_url') outside a user message",
                              "only user messages carry images to the CLIs")
            image = part.image_url
            url = image if isinstance(image, str) else image.url
            texts.append(slots.url(url, f"{param}.image_url"))
        else:
            assert isinstance(part, OpenAIAudioPart)
            raise _refuse(param, "an audio part ('input_audio')",
                          "audio input is not supported: the CLIs behind clinvk take text only")
    return PART_SEPARATOR.join(texts)


def _call_text(call: OpenAIToolCall) -> str:
    if call.function is not None:
        return tool_call_text(call.function.name, call.id, call.function.arguments)
    if call.custom is not None:
        return tool_call_text(call.custom.name, call.id, call.custom.input)
    return tool_call_text(call.type, call.id, "")


def message_text(message: OpenAIMessage, where: str, slots: ImageSlots | None = None) -> str:
    """All the text one message carries; tool calls and results as readable lines; images
    (in user messages) take slots in `slots`."""
    user = isinstance(message, OpenAIUserMessage)
    text = content_text(message.content, where, slots if user else None)
    if isinstance(message, OpenAIAssistantMessage):
        if not text and message.refusal:
            text = message.refusal
        calls = [_call_text(call) for call in message.tool_calls or ()]
        if message.function_call is not None:
            fc = message.function_call
            calls.append(tool_call_text(fc.name, None, fc.arguments))
        text = PART_SEPARATOR.join([text, *calls] if text else calls)
    elif isinstance(message, OpenAIToolMessage):
        text = tool_result_text(message.tool_call_id, text)
    elif isinstance(message, OpenAIFunctionMessage):
        text = tool_result_text(message.name, text)
    return text


def split_messages(
    messages: list[OpenAIMessage], slots: ImageSlots | None = None
) -> tuple[str | None, list[Turn]]:
    """The system prompt (system and developer messages, in order) and the other turns
    (a deprecated `function` result is a `tool` turn)."""
    system: list[str] = []
    turns: list[Turn] = []
    for i, message in enumerate(messages):
        text = message_text(message, f"messages[{i}]", slots)
        if isinstance(message, (OpenAISystemMessage, OpenAIDeveloperMessage)):
            system.append(text)
        elif isinstance(message, OpenAIFunctionMessage):
            turns.append(Turn(role="tool", text=text))
        else:
            turns.append(Turn(role=message.__struct_config__.tag, text=text))
    return SYSTEM_SEPARATOR.join(system) or None, turns


def _refuse_unsupported(body: OpenAIChatRequest) -> None:
    if body.n is not None and body.n > 1:
        raise InvalidRequest(
            "n > 1 is not supported: only 1 choice per request (each request runs the CLI "
            "once)", field="n"
        )
    if body.modalities and "audio" in body.modalities:
        raise InvalidRequest(
            "audio output is not supported: the CLIs behind clinvk answer in text; "
            'send modalities ["text"]', field="modalities"
        )
    if "\x00" in body.model:  # it may become a CLI argument, where NUL cannot go
        raise InvalidRequest("model must not contain a NUL character", field="model")


def effort(value: str | None, param: str = "reasoning_effort") -> Effort | None:
    """The domain's effort for an OpenAI reasoning effort; an unknown level is a 400."""
    if value is None:
        return None
    level = EFFORTS.get(value)
    if level is None:
        raise InvalidRequest(
            f"Invalid value for '{param}': {value!r}; supported values are "
            + ", ".join(repr(v) for v in EFFORTS),
            field=param,
        )
    return level


def response_format(value: dict | None, param: str = "response_format") -> tuple[dict | None, bool]:
    """(the JSON Schema of a `json_schema` format, whether `json_object` asks for JSON)."""
    kind = (value or {}).get("type", "text")
    if kind == "text":
        return None, False
    if kind == "json_object":
        return None, True
    spec = (value or {}).get("json_schema")
    schema = spec.get("schema") if isinstance(spec, dict) else None
    if kind == "json_schema" and isinstance(schema, dict):
        return schema, False
    raise InvalidRequest(
        f"Invalid '{param}': expected type 'text', 'json_object', or 'json_schema' with "
        "json_schema.schema an object",
        field=param,
    )


def with_instruction(system_prompt: str | None, instruction: str) -> str:
    """The system prompt with one more instruction at its end."""
    return SYSTEM_SEPARATOR.join(x for x in (system_prompt, instruction) if x)


def to_prompt_request(
    body: OpenAIChatRequest, *, config: Config, backends: list[str]
) -> PromptRequest:
    """Translate a chat completion request into the domain's PromptRequest."""
    _refuse_unsupported(body)
    route = route_model(body.model, config, backends)
    slots = ImageSlots(config.server)
    system_prompt, turns = split_messages(body.messages, slots)
    schema, json_object = response_format(body.response_format)
    if json_object:
        system_prompt = with_instruction(system_prompt, JSON_OBJECT_INSTRUCTION)
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
    prompt, images = slots.finish(render_conversation(turns))
    if not prompt.strip():
        raise InvalidRequest("messages carry no text to send", field="messages")
    return PromptRequest(
        backend=route.backend,
        model=route.model,
        prompt=prompt,
        images=images,
        effort=(options.effort if options else None) or effort(body.reasoning_effort),
        output_schema=schema,
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
