"""Wire types of the Anthropic-compatible API (`/anthropic/v1`).

Requests tolerate unknown fields (real clients send extras), except inside our own
`clinvk` object, where a typo must not silently do nothing. Responses and stream events
are tagged structs, so `type` is always written.
"""

from __future__ import annotations

import re
from typing import Any, Literal

import msgspec

from clinvk.adapters.http.clinvk_options import ClinvkOptions
from clinvk.domain.errors import InvalidRequest
from clinvk.domain.models import PositiveInt

# -- requests ---------------------------------------------------------------------------


class AnthropicBlockParam(msgspec.Struct, frozen=True, kw_only=True):
    """One content block of a message or of `system`; only its type and text are read."""

    type: str
    text: str | None = None


class AnthropicMessageParam(msgspec.Struct, frozen=True, kw_only=True):
    """One turn of `messages`."""

    role: Literal["user", "assistant"]
    content: str | list[AnthropicBlockParam]


class AnthropicMessagesRequest(msgspec.Struct, frozen=True, kw_only=True):
    """Body of POST /messages. Sampling and tool fields are typed so a wrong type is a
    400 as on Anthropic's API, but they are accepted and not passed to the CLIs."""

    model: str
    messages: list[AnthropicMessageParam]
    max_tokens: PositiveInt
    system: str | list[AnthropicBlockParam] | None = None
    stream: bool = False
    metadata: dict[str, Any] | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    stop_sequences: list[str] | None = None
    tools: list[Any] | None = None
    tool_choice: Any = None
    thinking: Any = None
    service_tier: str | None = None
    clinvk: ClinvkOptions | None = None


# -- responses --------------------------------------------------------------------------


class AnthropicTextBlock(msgspec.Struct, kw_only=True, tag_field="type", tag="text"):
    """The one content block an answer has."""

    text: str


class AnthropicUsage(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Token counts; `input_tokens` excludes the cached part, as on Anthropic's API."""

    input_tokens: int
    output_tokens: int
    cache_read_input_tokens: int | None = None


class AnthropicMessage(msgspec.Struct, kw_only=True, tag_field="type", tag="message"):
    """The `message` object (the whole answer, or the snapshot in `message_start`)."""

    id: str
    role: Literal["assistant"] = "assistant"
    content: list[AnthropicTextBlock]
    model: str
    stop_reason: str | None
    stop_sequence: str | None = None
    usage: AnthropicUsage


class AnthropicErrorDetail(msgspec.Struct, kw_only=True):
    type: str
    message: str


class AnthropicError(msgspec.Struct, kw_only=True, tag_field="type", tag="error"):
    """The error envelope; also the data of a mid-stream `error` event."""

    error: AnthropicErrorDetail


class AnthropicModel(msgspec.Struct, kw_only=True, tag_field="type", tag="model"):
    """One entry of GET /models: a backend or a configured alias."""

    id: str
    display_name: str
    created_at: str


class AnthropicModelList(msgspec.Struct, kw_only=True):
    data: list[AnthropicModel]
    has_more: bool
    first_id: str | None
    last_id: str | None


# -- stream events ----------------------------------------------------------------------


class _Event(msgspec.Struct, kw_only=True, tag_field="type"):
    pass


class AnthropicMessageStart(_Event, tag="message_start"):
    message: AnthropicMessage


class AnthropicContentBlockStart(_Event, tag="content_block_start"):
    index: int
    content_block: AnthropicTextBlock


class AnthropicTextDelta(msgspec.Struct, kw_only=True, tag_field="type", tag="text_delta"):
    text: str


class AnthropicContentBlockDelta(_Event, tag="content_block_delta"):
    index: int
    delta: AnthropicTextDelta


class AnthropicContentBlockStop(_Event, tag="content_block_stop"):
    index: int


class AnthropicMessageDeltaBody(msgspec.Struct, kw_only=True):
    stop_reason: str | None
    stop_sequence: str | None = None


class AnthropicMessageDelta(_Event, tag="message_delta"):
    delta: AnthropicMessageDeltaBody
    #: Totals for the whole message (Anthropic's usage here is cumulative), so clients
    #: get the real input count even though it was unknown at message_start.
    usage: AnthropicUsage


class AnthropicMessageStop(_Event, tag="message_stop"):
    pass


class AnthropicPing(_Event, tag="ping"):
    pass


AnthropicStreamEvent = (
    AnthropicMessageStart
    | AnthropicContentBlockStart
    | AnthropicContentBlockDelta
    | AnthropicContentBlockStop
    | AnthropicMessageDelta
    | AnthropicMessageStop
    | AnthropicPing
    | AnthropicError
)

_encode = msgspec.json.Encoder().encode


def sse(event: AnthropicStreamEvent) -> bytes:
    """One server-sent event, named after its `type` as Anthropic names them."""
    name = type(event).__struct_config__.tag
    return b"event: " + str(name).encode() + b"\ndata: " + _encode(event) + b"\n\n"


# -- decoding ---------------------------------------------------------------------------

messages_decoder = msgspec.json.Decoder(AnthropicMessagesRequest)

_AT = re.compile(r" - at `\$\.?(.*)`$")
#: msgspec's wording for a missing / unknown key, and Anthropic's (pydantic's) for it.
_NAMED = [
    (re.compile(r"^Object missing required field `([^`]+)`$"), "Field required"),
    (re.compile(r"^Object contains unknown field `([^`]+)`$"), "Extra inputs are not permitted"),
]


def _dotted(path: str) -> str:
    # msgspec says `messages[1].content[0]`; Anthropic says `messages.1.content.0`.
    return re.sub(r"\[(\d+)\]", r".\1", path)


def decode_messages_request(body: bytes) -> AnthropicMessagesRequest:
    """Decode a /messages body or raise InvalidRequest naming the field Anthropic-style."""
    if not body.strip():
        raise InvalidRequest("request body is empty; send a JSON object")
    try:
        return messages_decoder.decode(body)
    except msgspec.ValidationError as exc:
        text = str(exc)
        at = _AT.search(text)
        path, detail = (_dotted(at.group(1)), text[: at.start()]) if at else ("", text)
        for pattern, wording in _NAMED:
            named = pattern.match(detail)
            if named:
                path = f"{path}.{named.group(1)}" if path else named.group(1)
                detail = wording
        field = path or None
        raise InvalidRequest(f"{field}: {detail}" if field else detail, field=field) from None
    except msgspec.DecodeError as exc:
        raise InvalidRequest(f"request body is not valid JSON: {exc}") from None
