"""Content blocks -> the text a CLI prompt carries.

The CLIs take text, so each block becomes readable text in the conversation: a tool call
made by an earlier turn as `Tool call NAME (id ID) with input: {...}`, its result as
`Tool result for ID: ...`, a text document as its text, an image as `[image N]` (the
image itself goes to the CLI beside the prompt, see `http/images.py`). Thinking blocks carry
nothing for the CLI and are dropped; block types clinvk has never heard of give their text
(or content) if they have any and are otherwise dropped, as the API adds types faster than
a gateway can learn them. Only what cannot become text or an image (a PDF) is refused.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable

import msgspec

from clinvk.adapters.http.anthropic.schemas import (
    AnthropicBlockParam,
    AnthropicSourceParam,
)
from clinvk.adapters.http.images import ImageSlots
from clinvk.domain.chat import tool_call_text, tool_result_text
from clinvk.domain.errors import InvalidRequest

#: Text blocks of one message (or of `system`) are joined with a newline, so one block's
#: last word never runs into the next block's first (as the OpenAI dialect joins parts).
BLOCK_SEPARATOR = "\n"

#: Blocks that carry nothing for the CLI (clients echo a previous answer's thinking).
DROPPED = frozenset({"thinking", "redacted_thinking"})

_encode = msgspec.json.Encoder().encode


def _refuse(where: str, what: str) -> InvalidRequest:
    return InvalidRequest(
        f"{where}: {what} are not supported; the CLIs behind clinvk take text only, so "
        "send this content as a text block",
        field=where,
    )


Render = Callable[[AnthropicBlockParam, str, ImageSlots | None], str | None]


def _text(block: AnthropicBlockParam, where: str, slots: ImageSlots | None) -> str | None:
    if block.text is None:
        raise InvalidRequest(f"{where}.text: Field required", field=f"{where}.text")
    return block.text


def _image(block: AnthropicBlockParam, where: str, slots: ImageSlots | None) -> str | None:
    source = block.source
    if slots is None:
        raise _refuse(where, "image blocks here")
    if not isinstance(source, AnthropicSourceParam):
        raise InvalidRequest(f"{where}.source: Field required", field=f"{where}.source")
    if source.type == "base64":
        return slots.base64(source.media_type, source.data, f"{where}.source")
    if source.type == "url" and source.url:
        return slots.url(source.url, f"{where}.source.url")
    raise InvalidRequest(
        f"{where}.source: image sources of type {source.type!r} are not supported; send "
        "base64 data (or a URL)",
        field=f"{where}.source",
    )


def _decoded_text(source: AnthropicSourceParam) -> str | None:
    """The text of a base64 source when it is UTF-8 text, else None."""
    if source.media_type == "application/pdf" or source.data is None:
        return None
    try:
        return base64.b64decode(source.data, validate=True).decode()
    except (binascii.Error, ValueError):  # ValueError: non-ASCII "base64", bad UTF-8
        return None


def _document(block: AnthropicBlockParam, where: str, slots: ImageSlots | None) -> str | None:
    source = block.source
    if not isinstance(source, AnthropicSourceParam):
        raise InvalidRequest(f"{where}.source: Field required", field=f"{where}.source")
    if source.type == "text":
        body = source.data or ""
    elif source.type == "content":
        body = content_text(source.content, f"{where}.source.content", slots)
    elif source.type == "url" and source.url:
        body = f"(to be read at {source.url})"
    else:
        decoded = _decoded_text(source) if source.type == "base64" else None
        if decoded is None:
            kind = source.media_type or source.type
            raise _refuse(where, f"document blocks with {kind} content")
        body = decoded
    lines = [f"Document: {block.title}" if block.title else "Document:"]
    if block.context:
        lines.append(f"Context: {block.context}")
    return "\n".join([*lines, body])


def _search_result(block: AnthropicBlockParam, where: str, slots: ImageSlots | None) -> str | None:
    head = " ".join(x for x in ("Search result:", block.title, _source_url(block)) if x)
    return f"{head}\n{content_text(block.content, f'{where}.content', slots)}"


def _web_search_result(
    block: AnthropicBlockParam, where: str, slots: ImageSlots | None
) -> str | None:
    return " ".join(x for x in ("Web search result:", block.title, block.url) if x)


def _source_url(block: AnthropicBlockParam) -> str | None:
    return f"<{block.source}>" if isinstance(block.source, str) and block.source else None


def _tool_use(block: AnthropicBlockParam, where: str, slots: ImageSlots | None) -> str | None:
    name = block.name or block.type
    if block.server_name:
        name = f"{block.server_name}.{name}"
    return tool_call_text(name, block.id, _encode(block.input).decode())


def _tool_result(block: AnthropicBlockParam, where: str, slots: ImageSlots | None) -> str | None:
    text = content_text(block.content, f"{where}.content", slots)
    return tool_result_text(block.tool_use_id, text, is_error=bool(block.is_error))


def _other(block: AnthropicBlockParam, where: str, slots: ImageSlots | None) -> str | None:
    if block.type.endswith("_tool_use"):
        return _tool_use(block, where, slots)
    if block.type.endswith("_tool_result"):
        return _tool_result(block, where, slots)
    if block.text is not None:
        return block.text
    if block.content is not None:
        return content_text(block.content, f"{where}.content", slots) or None
    return None


_RENDER: dict[str, Render] = {
    "text": _text,
    "image": _image,
    "document": _document,
    "search_result": _search_result,
    "web_search_result": _web_search_result,
    "tool_use": _tool_use,
    "tool_result": _tool_result,
}


def block_text(
    block: AnthropicBlockParam, where: str, slots: ImageSlots | None = None
) -> str | None:
    """The text one block carries (None: nothing), or InvalidRequest naming `where`; an
    image takes a slot in `slots` (without slots, an image is refused)."""
    if block.type in DROPPED:
        return None
    return _RENDER.get(block.type, _other)(block, where, slots)


def content_text(
    content: str | list[AnthropicBlockParam] | dict | None,
    where: str,
    slots: ImageSlots | None = None,
) -> str:
    """The text of a content field: a string, blocks (joined with a newline), or an
    object some server tool returned (as JSON)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        return _encode(content).decode()
    texts = (block_text(block, f"{where}.{j}", slots) for j, block in enumerate(content))
    return BLOCK_SEPARATOR.join(t for t in texts if t)


def system_text(blocks: list[AnthropicBlockParam]) -> str:
    """The text of `system` blocks, which are text blocks only (as on Anthropic's API)."""
    for j, block in enumerate(blocks):
        if block.type != "text":
            raise InvalidRequest(
                f"system.{j}: system blocks must be text blocks, not {block.type}",
                field=f"system.{j}",
            )
    return content_text(blocks, "system")
