"""Wire types of the Anthropic-compatible API (`/anthropic/v1`).

Requests tolerate unknown fields (real clients send extras), except inside our own
`clinvk` object, where a typo must not silently do nothing. Responses and stream events
are tagged structs, so `type` is always written.
"""

from __future__ import annotations

import re
from typing import Any, Literal, TypeVar

import msgspec

from clinvk.adapters.http.clinvk_options import ClinvkOptions
from clinvk.domain.errors import InvalidRequest
from clinvk.domain.models import PositiveInt

# -- requests ---------------------------------------------------------------------------


class AnthropicSourceParam(msgspec.Struct, frozen=True, kw_only=True):
    """Where an `image`'s or `document`'s content comes from (`base64`, `text`, `url`,
    `content`, `file`)."""

    type: str
    media_type: str | None = None
    data: str | None = None
    url: str | None = None
    file_id: str | None = None
    content: str | list[AnthropicBlockParam] | None = None


class AnthropicBlockParam(msgspec.Struct, frozen=True, kw_only=True):
    """One content block of a message, of `system` or of a tool result.

    One struct for every block type, today's and tomorrow's: Anthropic adds block types
    often and real clients send them (Claude Code echoes `server_tool_use`,
    `web_search_tool_result`, ...), so a type clinvk has not heard of must not be a 400.
    Each field belongs to some block types and is optional here; `blocks.py` reads the
    ones the block's type has. Declared fields are still type-checked on decode.
    """

    type: str
    #: text, and the text items of a search_result or tool_result.
    text: str | None = None
    #: tool_use, server_tool_use, mcp_tool_use (and any other `*_tool_use`).
    id: str | None = None
    name: str | None = None
    input: Any = None
    server_name: str | None = None
    #: tool_result, web_search_tool_result, mcp_tool_result (and any other `*_tool_result`).
    tool_use_id: str | None = None
    content: str | list[AnthropicBlockParam] | dict[str, Any] | None = None
    is_error: bool | None = None
    #: image and document (an object); search_result (the result's URL, a string).
    source: AnthropicSourceParam | str | None = None
    #: document, search_result, web_search_result.
    title: str | None = None
    context: str | None = None
    url: str | None = None
    #: container_upload.
    file_id: str | None = None


class AnthropicMessageParam(msgspec.Struct, frozen=True, kw_only=True):
    """One turn of `messages`; a `system` turn is an instruction given at that point of the
    conversation (Claude Code sends one after the user's first message)."""

    role: Literal["user", "assistant", "system"]
    content: str | list[AnthropicBlockParam]


class AnthropicToolParam(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One entry of `tools`: a client tool (`input_schema`) or a server tool (`type`)."""

    name: str
    type: str | None = None
    description: str | None = None
    input_schema: dict[str, Any] | None = None


class AnthropicToolChoice(msgspec.Struct, frozen=True, kw_only=True):
    type: str
    name: str | None = None
    disable_parallel_tool_use: bool | None = None


class AnthropicThinking(msgspec.Struct, frozen=True, kw_only=True):
    """`thinking`: `{"type": "enabled", "budget_tokens": N}`, `disabled` or `adaptive`."""

    type: str
    budget_tokens: int | None = None


class AnthropicOutputConfig(msgspec.Struct, frozen=True, kw_only=True):
    """`output_config`: the effort level and a structured-output format."""

    effort: str | None = None
    format: dict[str, Any] | None = None


class AnthropicCountTokensRequest(msgspec.Struct, frozen=True, kw_only=True):
    """Body of POST /messages/count_tokens: what a message request says about its input."""

    model: str
    messages: list[AnthropicMessageParam]
    system: str | list[AnthropicBlockParam] | None = None
    tools: list[AnthropicToolParam] | None = None
    tool_choice: AnthropicToolChoice | None = None
    thinking: AnthropicThinking | None = None
    output_config: AnthropicOutputConfig | None = None
    context_management: dict[str, Any] | None = None
    mcp_servers: list[dict[str, Any]] | None = None


class AnthropicMessagesRequest(AnthropicCountTokensRequest, frozen=True, kw_only=True):
    """Body of POST /messages. Every field Anthropic's API takes is typed, so a wrong type
    is a 400 as there; which ones reach the CLI is listed in docs/anthropic.md."""

    max_tokens: PositiveInt
    stream: bool = False
    metadata: dict[str, Any] | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    stop_sequences: list[str] | None = None
    service_tier: str | None = None
    container: str | dict[str, Any] | None = None
    inference_geo: str | None = None
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


class AnthropicTokenCount(msgspec.Struct, kw_only=True):
    """The answer of POST /messages/count_tokens."""

    input_tokens: int


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

_T = TypeVar("_T")

messages_decoder = msgspec.json.Decoder(AnthropicMessagesRequest)
count_tokens_decoder = msgspec.json.Decoder(AnthropicCountTokensRequest)

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
    return _decode(messages_decoder, body)


def decode_count_tokens_request(body: bytes) -> AnthropicCountTokensRequest:
    """Decode a /messages/count_tokens body, refusing it as /messages would."""
    return _decode(count_tokens_decoder, body)


def _decode(decoder: msgspec.json.Decoder[_T], body: bytes) -> _T:
    if not body.strip():
        raise InvalidRequest("request body is empty; send a JSON object")
    try:
        return decoder.decode(body)
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
