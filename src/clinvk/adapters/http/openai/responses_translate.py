"""Responses API request -> domain PromptRequest; results -> response objects; response ids.

A stored response lives in the metadata of the clinvk session its turn ran in (the
SessionStore port is unchanged), and its id carries that session's id, so
`previous_response_id` and GET/DELETE find the session without a search.
"""

from __future__ import annotations

import base64
import binascii
import time
import uuid
from typing import Any

import msgspec

from clinvk.adapters.http.images import ImageSlots
from clinvk.adapters.http.openai.errors import internal_envelope
from clinvk.adapters.http.openai.responses_schemas import (
    IGNORED_ITEM_TYPES,
    OpenAIResponse,
    OpenAIResponsesRequest,
    ResponsesContent,
    ResponsesCustomToolCallItem,
    ResponsesCustomToolCallOutputItem,
    ResponsesError,
    ResponsesFunctionCallItem,
    ResponsesFunctionCallOutputItem,
    ResponsesIncompleteDetails,
    ResponsesInputAudioPart,
    ResponsesInputFilePart,
    ResponsesInputImagePart,
    ResponsesInputItem,
    ResponsesInputTextPart,
    ResponsesInputTokensDetails,
    ResponsesLocalShellCallItem,
    ResponsesMessageItem,
    ResponsesOutputItem,
    ResponsesOutputMessage,
    ResponsesOutputText,
    ResponsesOutputTextPart,
    ResponsesOutputTokensDetails,
    ResponseStatus,
    ResponsesUsage,
)
from clinvk.adapters.http.openai.translate import (
    JSON_OBJECT_INSTRUCTION,
    PART_SEPARATOR,
    SYSTEM_SEPARATOR,
    effort,
    response_format,
    with_instruction,
)
from clinvk.domain.chat import (
    Turn,
    render_conversation,
    route_model,
    tool_call_text,
    tool_result_text,
)
from clinvk.domain.config import Config
from clinvk.domain.errors import ClinvkError, InvalidRequest
from clinvk.domain.models import Effort, PromptRequest, StopReason, TokenUsage

#: Session metadata key holding `{"latest": id, "stored": {id: response}, "history":
#: [entry, ...]}` (history: every turn of the session, see HistoryEntry).
METADATA_KEY = "openai.responses"
#: Set in that record for a conversation of runs with client tools: such a run keeps no CLI
#: session, so continuing the conversation replays it (responses_tools.py).
REPLAY_KEY = "replay"

_RANDOM_LEN = 32
_encode_json = msgspec.json.Encoder().encode
_PREFIX = "resp_"

# -- ids -------------------------------------------------------------------------------


def new_response_id(session_id: str | None) -> str:
    """A fresh response id; it carries the session id (base64url) when there is one."""
    ident = _PREFIX + uuid.uuid4().hex
    if session_id:
        ident += base64.urlsafe_b64encode(session_id.encode()).decode().rstrip("=")
    return ident


def session_of(response_id: str) -> str | None:
    """The session id a response id carries, or None when it carries none / is not ours."""
    if not response_id.startswith(_PREFIX):
        return None
    encoded = response_id[len(_PREFIX) + _RANDOM_LEN:]
    if not encoded:
        return None
    try:
        raw = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
        session_id = raw.decode()
    except (binascii.Error, ValueError):
        return None
    return session_id if session_id and "\x00" not in session_id else None


def message_id(response_id: str) -> str:
    """The output message id of a response: its id's own tail, so an `item_reference` to
    the message (what the Vercel AI SDK sends for an earlier answer) finds the response."""
    return "msg_" + response_id[len(_PREFIX):]


def response_of(item_id: str) -> str:
    """The id of the response whose output message `item_id` is (see `message_id`)."""
    return _PREFIX + item_id.partition("_")[2]


# -- request ---------------------------------------------------------------------------


def _refuse_part(param: str, what: str) -> InvalidRequest:
    return InvalidRequest(
        f"{param} is {what}; the CLIs behind clinvk take text only and clinvk does not "
        "pass images or files yet, so send this content as text",
        field=param,
    )


def _image(
    part: ResponsesInputImagePart, param: str, slots: ImageSlots | None, refuse: bool
) -> str:
    """An `input_image`: a slot in `slots`, a 400 when `refuse` (not a user message), else
    a mention (the recorded history)."""
    if refuse:
        raise InvalidRequest(
            f"{param}: images are taken in user messages only", field=param
        )
    if part.image_url is None:
        raise InvalidRequest(
            f"{param}: uploaded images (file_id) are not supported, clinvk has no Files "
            "API; send the image as a data: URL in image_url",
            field=param,
        )
    return slots.url(part.image_url, param) if slots is not None else "[image]"


def content_text(
    content: ResponsesContent,
    where: str,
    slots: ImageSlots | None = None,
    *,
    refuse_images: bool = False,
) -> str:
    """The text of an item's content (an image takes a slot in `slots`); a part clinvk
    cannot carry is a 400 naming it."""
    if isinstance(content, str):
        return content
    texts: list[str] = []
    for j, part in enumerate(content):
        param = f"{where}.content[{j}]"
        if isinstance(part, (ResponsesInputTextPart, ResponsesOutputTextPart)):
            texts.append(part.text)
        elif isinstance(part, ResponsesInputImagePart):
            texts.append(_image(part, param, slots, refuse_images))
        elif isinstance(part, ResponsesInputFilePart):
            raise _refuse_part(param, "a file part ('input_file')")
        elif isinstance(part, ResponsesInputAudioPart):
            raise _refuse_part(param, "an audio part ('input_audio')")
        else:
            texts.append(part.refusal)
    return PART_SEPARATOR.join(texts)


_ITEM_TYPES: dict[str, type[ResponsesInputItem]] = {
    "message": ResponsesMessageItem,
    "function_call": ResponsesFunctionCallItem,
    "function_call_output": ResponsesFunctionCallOutputItem,
    "custom_tool_call": ResponsesCustomToolCallItem,
    "custom_tool_call_output": ResponsesCustomToolCallOutputItem,
    "local_shell_call": ResponsesLocalShellCallItem,
}


def decode_item(raw: dict[str, Any], where: str) -> ResponsesInputItem | None:
    """One input item, or None for one that carries nothing for the prompt; an unknown or
    malformed item is a 400 naming it."""
    kind = raw.get("type", "message")
    if isinstance(kind, str) and kind in IGNORED_ITEM_TYPES:
        return None
    target = _ITEM_TYPES.get(kind) if isinstance(kind, str) else None
    if target is None:
        raise InvalidRequest(
            f"{where} has type {kind!r}, which clinvk does not take; send messages "
            "(role + content), tool calls and tool call outputs",
            field=f"{where}.type",
        )
    try:
        return msgspec.convert(raw, target)
    except msgspec.ValidationError as exc:
        detail = str(exc)
        _, _, path = detail.rpartition(" - at `$")
        field = where + path.rstrip("`") if path else where
        raise InvalidRequest(f"invalid {where}: {detail}", field=field) from None


def input_turns(body: OpenAIResponsesRequest, slots: ImageSlots | None = None) -> list[Turn]:
    """Every input item that carries text, as a turn, in order (system and developer
    messages included; `instructions` are not an item); images of user messages take
    slots in `slots`."""
    if isinstance(body.input, str):
        return [Turn(role="user", text=body.input)]
    turns: list[Turn] = []
    for i, raw in enumerate(body.input):
        where = f"input[{i}]"
        item = decode_item(raw, where)
        if item is None:
            continue
        if isinstance(item, ResponsesMessageItem):
            user = item.role == "user"
            text = content_text(item.content, where, slots if user else None,
                                refuse_images=slots is not None and not user)
            turns.append(Turn(role=item.role, text=text))
        elif isinstance(item, ResponsesFunctionCallItem):
            turns.append(Turn(role="assistant",
                              text=tool_call_text(item.name, item.call_id, item.arguments)))
        elif isinstance(item, ResponsesCustomToolCallItem):
            turns.append(Turn(role="assistant",
                              text=tool_call_text(item.name, item.call_id, item.input)))
        elif isinstance(item, ResponsesLocalShellCallItem):
            arguments = _encode_json(item.action).decode()
            turns.append(Turn(role="assistant",
                              text=tool_call_text("local_shell", item.call_id, arguments)))
        else:
            text = content_text(item.output, where, slots)
            turns.append(Turn(role="tool", text=tool_result_text(item.call_id, text)))
    return turns


_SYSTEM_ROLES = ("system", "developer")


def split_input(
    body: OpenAIResponsesRequest, slots: ImageSlots | None = None
) -> tuple[str | None, list[Turn]]:
    """The system prompt (`instructions`, then system/developer messages) and the turns."""
    system = [body.instructions] if body.instructions else []
    turns: list[Turn] = []
    for turn in input_turns(body, slots):
        if turn.role in _SYSTEM_ROLES:
            system.append(turn.text)
        else:
            turns.append(turn)
    return SYSTEM_SEPARATOR.join(system) or None, turns


def reasoning_effort(body: OpenAIResponsesRequest) -> Effort | None:
    """The run's effort from `reasoning.effort` (as `reasoning_effort` on chat)."""
    value = (body.reasoning or {}).get("effort")
    if value is not None and not isinstance(value, str):
        raise InvalidRequest("reasoning.effort must be a string", field="reasoning.effort")
    return effort(value, "reasoning.effort")


def text_format(body: OpenAIResponsesRequest) -> tuple[dict | None, bool]:
    """(the JSON Schema of a `json_schema` text format, whether `json_object` asks for
    JSON), from `text.format` (its schema sits in the format itself, not under
    `json_schema` as on chat)."""
    fmt = (body.text or {}).get("format")
    if fmt is None:
        return None, False
    if not isinstance(fmt, dict):
        raise InvalidRequest("text.format must be an object", field="text.format")
    if fmt.get("type") == "json_schema":
        fmt = {"type": "json_schema", "json_schema": {"schema": fmt.get("schema")}}
    return response_format(fmt, "text.format")


def to_prompt_request(
    body: OpenAIResponsesRequest,
    *,
    config: Config,
    backends: list[str],
    session_id: str | None,
    earlier: list[Turn] | None = None,
) -> PromptRequest:
    """Translate a Responses request (continuing `session_id`, if any) into a PromptRequest.

    The input is all new to the CLI (a continued session already holds the earlier turns),
    so every item is sent; `earlier` turns (a conversation replayed from an earlier
    response, see responses.py) are written before it.
    """
    if body.background:
        raise InvalidRequest(
            "background responses are not supported: clinvk runs each request while the "
            "client waits; leave background unset", field="background"
        )
    if "\x00" in body.model:  # it may become a CLI argument, where NUL cannot go
        raise InvalidRequest("model must not contain a NUL character", field="model")
    route = route_model(body.model, config, backends)
    slots = ImageSlots(config.server)
    system_prompt, turns = split_input(body, slots)
    schema, json_object = text_format(body)
    if json_object:
        system_prompt = with_instruction(system_prompt, JSON_OBJECT_INSTRUCTION)
    prompt, images = slots.finish(render_conversation([*(earlier or []), *turns]))
    if not prompt.strip():
        raise InvalidRequest("input carries no text to send", field="input")
    options = body.clinvk
    return PromptRequest(
        backend=route.backend,
        model=route.model,
        prompt=prompt,
        images=images,
        system_prompt=system_prompt,
        effort=(options.effort if options else None) or reasoning_effort(body),
        output_schema=schema,
        max_tokens=body.max_output_tokens,
        metadata=dict(body.metadata or {}),
        session_id=session_id,
        workdir=options.workdir if options else None,
        approval_mode=options.approval_mode if options else "default",
        sandbox_mode=options.sandbox_mode if options else "default",
        max_turns=options.max_turns if options else None,
        # store: false with no session to continue keeps nothing at all.
        ephemeral=(options.ephemeral if options else False)
        or (body.store is False and session_id is None),
        max_retries=options.max_retries if options else None,
        fallback=list(options.fallback) if options else [],
    )


# -- conversations kept for branching ---------------------------------------------------


class HistoryEntry(msgspec.Struct, frozen=True, kw_only=True):
    """One turn of a session as clinvk keeps it: the turns the request carried (a replayed
    conversation included) and the answer."""

    id: str
    turns: list[Turn]
    output: str


def history_entry(response_id: str, turns: list[Turn], output: str) -> dict[str, Any]:
    """A history entry as stored in the session's metadata."""
    return msgspec.to_builtins(HistoryEntry(id=response_id, turns=turns, output=output))


def conversation_until(history: Any, response_id: str) -> list[Turn] | None:
    """The conversation up to and including the answer `response_id`, from a session's
    history; None when the history does not hold it (or is not one clinvk wrote)."""
    try:
        entries = msgspec.convert(history, list[HistoryEntry])
    except msgspec.ValidationError:
        return None
    turns: list[Turn] = []
    for entry in entries:
        turns += [*entry.turns, Turn(role="assistant", text=entry.output)]
        if entry.id == response_id:
            return turns
    return None


# -- response --------------------------------------------------------------------------


def usage(tokens: TokenUsage) -> ResponsesUsage:
    """Responses usage from the CLI's real counts (input already includes cached tokens)."""
    return ResponsesUsage(
        input_tokens=tokens.input_tokens,
        input_tokens_details=ResponsesInputTokensDetails(cached_tokens=tokens.cached_tokens),
        output_tokens=tokens.output_tokens,
        output_tokens_details=ResponsesOutputTokensDetails(
            reasoning_tokens=tokens.reasoning_tokens
        ),
        total_tokens=tokens.input_tokens + tokens.output_tokens,
    )


def final_status(stop: StopReason) -> tuple[ResponseStatus, ResponsesIncompleteDetails | None]:
    """`incomplete` (max_output_tokens) when a limit cut the answer short."""
    if stop in ("max_tokens", "max_turns"):
        return "incomplete", ResponsesIncompleteDetails(reason="max_output_tokens")
    return "completed", None


def output_message(msg_id: str, text: str, *, done: bool = True) -> ResponsesOutputMessage:
    """The one assistant message of an answer."""
    return ResponsesOutputMessage(
        id=msg_id,
        status="completed" if done else "in_progress",
        content=[ResponsesOutputText(text=text)] if done else [],
    )


def response_object(
    body: OpenAIResponsesRequest,
    *,
    response_id: str,
    created_at: int,
    model: str,
    status: ResponseStatus,
    output: list[ResponsesOutputItem],
    tokens: TokenUsage | None = None,
    incomplete: ResponsesIncompleteDetails | None = None,
    error: ResponsesError | None = None,
    tools: list[dict[str, Any]] | None = None,
) -> OpenAIResponse:
    """A response object echoing the request's settings; `tools`: the client's function
    tools offered to the model (none unless the request went through the bridge)."""
    return OpenAIResponse(
        id=response_id,
        created_at=created_at,
        status=status,
        error=error,
        incomplete_details=incomplete,
        instructions=body.instructions,
        max_output_tokens=body.max_output_tokens,
        model=model,
        output=output,
        parallel_tool_calls=body.parallel_tool_calls is not False,
        previous_response_id=body.previous_response_id,
        store=body.store is not False,
        temperature=body.temperature,
        top_p=body.top_p,
        tool_choice=(body.tool_choice or "auto") if tools else "auto",
        tools=tools or [],
        truncation=body.truncation or "disabled",
        usage=usage(tokens) if tokens is not None else None,
        user=body.user,
        metadata=dict(body.metadata or {}),
    )


def now() -> int:
    """Seconds since the epoch, as `created_at` carries them."""
    return int(time.time())


def stream_failure(exc: BaseException) -> ResponsesError:
    """The `error` of the `response.failed` event that ends a stream already begun: the
    clinvk error as it is, anything else as the dialect's internal error."""
    if isinstance(exc, ClinvkError):
        return ResponsesError(code=exc.code, message=exc.message)
    detail = internal_envelope().error
    return ResponsesError(code=detail.code or "internal_error", message=detail.message)
