"""Hypothesis strategies for the chat dialects' full request field sets: every field and
content type Anthropic's Messages API and OpenAI's chat completions take, as real clients
(Claude Code, the SDKs, agent frameworks) send them.

Each request strategy draws `(body, refused)`: a JSON-able body and whether clinvk must
refuse it with a 4xx because it carries content the CLIs cannot take (a binary document,
audio, more than one choice, an image by URL while `server.fetch_remote_images` is off, an
image of an unsupported type, more images than `server.max_images`). Everything else —
inline images included — must be answered.
"""

from __future__ import annotations

import base64
import re
from typing import Any

from hypothesis import strategies as st

from clinvk.domain.config import ServerConfig
from tests.support.images import data_url, png_b64

#: Most images a request may carry under the default config.
MAX_IMAGES = ServerConfig().max_images

#: Characters of request text: no lone surrogates (not JSON) and no NUL, which a CLI
#: argument cannot hold (clinvk refuses it, as the domain documents).
_chars = st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")
#: Words a prompt is made of (never blank).
words = st.text(alphabet=_chars, min_size=1, max_size=30).filter(lambda s: s.strip())
any_text = st.text(alphabet=_chars, max_size=30)
ids = st.from_regex(r"[a-z]{4}_[A-Za-z0-9]{1,8}", fullmatch=True)
#: A JSON object such as a tool input or a schema.
objects = st.dictionaries(st.text(max_size=6), st.none() | st.integers() | any_text, max_size=3)

CACHE_CONTROL = [{"type": "ephemeral"}, {"type": "ephemeral", "ttl": "1h"}]


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


# -- Anthropic ---------------------------------------------------------------------------


@st.composite
def text_blocks(draw, text=words):
    block = {"type": "text", "text": draw(text)}
    if draw(st.booleans()):
        block["cache_control"] = draw(st.sampled_from(CACHE_CONTROL))
    if draw(st.booleans()):
        block["citations"] = []
    return block


#: (image block, refused): inline images are carried; a URL (not fetched by default) and
#: a type no CLI takes are refused.
images = st.sampled_from([
    ({"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                  "data": png_b64()}}, False),
    ({"type": "image", "source": {"type": "base64", "media_type": "image/jpeg",
                                  "data": png_b64((1, 2, 3))}}, False),
    ({"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}}, True),
    ({"type": "image", "source": {"type": "base64", "media_type": "image/bmp",
                                  "data": png_b64()}}, True),
])


def image_count(body: Any) -> int:
    """How many image blocks / parts a request body holds, however deep."""
    if isinstance(body, list):
        return sum(image_count(item) for item in body)
    if not isinstance(body, dict):
        return 0
    own = body.get("type") in ("image", "image_url", "input_image")
    return int(own) + sum(image_count(v) for k, v in body.items() if k != "type")


@st.composite
def documents(draw):
    """(block, refused): text, content and URL documents are carried; PDFs and files not."""
    title = draw(st.none() | words)
    kind = draw(st.sampled_from(["text", "content", "url", "base64-text", "pdf", "file"]))
    source = {
        "text": lambda: {"type": "text", "media_type": "text/plain", "data": draw(any_text)},
        "content": lambda: {"type": "content",
                            "content": draw(st.lists(text_blocks(), max_size=2))},
        "url": lambda: {"type": "url", "url": "https://example.com/a.pdf"},
        "base64-text": lambda: {"type": "base64", "media_type": "text/plain",
                                "data": _b64(draw(any_text))},
        "pdf": lambda: {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0="},
        "file": lambda: {"type": "file", "file_id": "file_011"},
    }[kind]()
    block = {"type": "document", "source": source}
    if title is not None:
        block["title"] = title
    if draw(st.booleans()):
        block["context"] = draw(any_text)
    if draw(st.booleans()):
        block["citations"] = {"enabled": draw(st.booleans())}
    return block, kind in ("pdf", "file")


tool_uses = st.builds(
    lambda t, i, n, inp: {"type": t, "id": i, "name": n, "input": inp},
    st.sampled_from(["tool_use", "server_tool_use"]), ids, words, objects,
)
mcp_tool_uses = st.builds(
    lambda i, n, s, inp: {"type": "mcp_tool_use", "id": i, "name": n, "server_name": s,
                          "input": inp},
    ids, words, words, objects,
)
thinking = st.sampled_from([
    {"type": "thinking", "thinking": "Let me see.", "signature": "c2ln"},
    {"type": "redacted_thinking", "data": "b3BhcXVl"},
])
web_search_results = st.builds(
    lambda i, t: {"type": "web_search_tool_result", "tool_use_id": i, "content": [
        {"type": "web_search_result", "url": "https://example.com", "title": t,
         "encrypted_content": "eyJ9", "page_age": "1 day"}]},
    ids, words,
) | st.builds(
    lambda i: {"type": "web_search_tool_result", "tool_use_id": i,
               "content": {"type": "web_search_tool_result_error",
                           "error_code": "max_uses_exceeded"}},
    ids,
)
search_results = st.builds(
    lambda t, c: {"type": "search_result", "source": "https://example.com/doc", "title": t,
                  "content": c},
    words, st.lists(text_blocks(), min_size=1, max_size=2),
)
#: Block types clinvk has no special reading for, from newer API versions or betas.
other_blocks = st.sampled_from([
    {"type": "container_upload", "file_id": "file_011"},
    {"type": "code_execution_tool_result", "tool_use_id": "srvtoolu_1",
     "content": {"type": "code_execution_result", "stdout": "4", "stderr": "", "return_code": 0,
                 "content": []}},
    {"type": "web_fetch_tool_result", "tool_use_id": "srvtoolu_2",
     "content": {"type": "web_fetch_result", "url": "https://example.com"}},
    {"type": "block_from_the_future", "text": "carried", "extra": {"x": 1}},
    {"type": "block_from_the_future"},
])


@st.composite
def tool_results(draw):
    """(block, refused): a tool_result whose content is a string, blocks or nothing."""
    block = {"type": draw(st.sampled_from(["tool_result", "mcp_tool_result"])),
             "tool_use_id": draw(ids)}
    refused = False
    shape = draw(st.sampled_from(["string", "blocks", "none", "image"]))
    if shape == "string":
        block["content"] = draw(any_text)
    elif shape == "blocks":
        block["content"] = draw(st.lists(text_blocks() | search_results, max_size=2))
    elif shape == "image":
        image, refused = draw(images)
        block["content"] = [draw(text_blocks()), image]
    if draw(st.booleans()):
        block["is_error"] = draw(st.booleans())
    if draw(st.booleans()):
        block["cache_control"] = CACHE_CONTROL[0]
    return block, refused


@st.composite
def anthropic_blocks(draw):
    """(block, refused) for any block type a client may send."""
    kind = draw(st.sampled_from(["text", "image", "document", "tool_use", "mcp_tool_use",
                                 "tool_result", "thinking", "web_search", "search_result",
                                 "other"]))
    if kind == "document":
        return draw(documents())
    if kind == "tool_result":
        return draw(tool_results())
    if kind == "image":
        return draw(images)
    strategy = {"text": text_blocks(), "tool_use": tool_uses,
                "mcp_tool_use": mcp_tool_uses, "thinking": thinking,
                "web_search": web_search_results, "search_result": search_results,
                "other": other_blocks}[kind]
    return draw(strategy), False


@st.composite
def anthropic_messages(draw):
    """(messages, refused): turns of every role; each user turn has some text."""
    messages, refused = [], False
    for i in range(draw(st.integers(1, 5))):
        role = "user" if i == 0 else draw(st.sampled_from(["user", "assistant", "system"]))
        if draw(st.integers(0, 3)) == 0:
            content = draw(words)
        else:
            drawn = draw(st.lists(anthropic_blocks(), max_size=4))
            content = [block for block, _ in drawn]
            refused = refused or any(r for _, r in drawn)
            if role == "user":
                content.insert(draw(st.integers(0, len(content))), draw(text_blocks()))
        messages.append({"role": role, "content": content})
    return messages, refused


client_tools = st.builds(
    lambda n, d, schema: {"name": n, "description": d,
                          "input_schema": {"type": "object", "properties": schema}},
    words, any_text, st.dictionaries(st.text(max_size=5), st.just({"type": "string"}), max_size=2),
)
server_tools = st.sampled_from([
    {"type": "web_search_20250305", "name": "web_search", "max_uses": 5},
    {"type": "bash_20250124", "name": "bash"},
    {"type": "text_editor_20250728", "name": "str_replace_based_edit_tool"},
    {"type": "code_execution_20250825", "name": "code_execution"},
])

anthropic_optional = {
    "system": words | st.lists(text_blocks(), max_size=3),
    "stream": st.booleans(),
    "metadata": st.fixed_dictionaries({"user_id": words}),
    "temperature": st.floats(0, 1),
    "top_p": st.floats(0, 1),
    "top_k": st.integers(1, 500),
    "stop_sequences": st.lists(words, max_size=3),
    "tools": st.lists(client_tools | server_tools, max_size=4),
    "tool_choice": st.sampled_from([{"type": "auto"}, {"type": "any"}, {"type": "none"},
                                    {"type": "tool", "name": "Bash"},
                                    {"type": "auto", "disable_parallel_tool_use": True}]),
    "thinking": st.sampled_from([{"type": "enabled", "budget_tokens": 2048},
                                 {"type": "enabled", "budget_tokens": 20000},
                                 {"type": "disabled"}, {"type": "adaptive"}]),
    "context_management": st.just({"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]}),
    "output_config": st.fixed_dictionaries({}, optional={
        "effort": st.sampled_from(["low", "medium", "high", "xhigh", "max"]),
        "format": st.just({"type": "json_schema", "schema": {"type": "object"}}),
    }),
    "service_tier": st.sampled_from(["auto", "standard_only"]),
    "container": st.none() | st.just("container_011"),
    "mcp_servers": st.just([{"type": "url", "url": "https://example.com/sse", "name": "ex"}]),
    "inference_geo": st.just("us"),
    "a_field_from_the_future": objects,
}


@st.composite
def anthropic_requests(draw):
    """(body, refused) for POST /anthropic/v1/messages, drawing from every request field."""
    messages, refused = draw(anthropic_messages())
    body = {
        "model": draw(st.sampled_from(["claude", "codex", "gemini", "claude-opus-4-8",
                                       "claude-haiku-4-5-20251001", "gemini/gemini-2.5-pro",
                                       "gpt-5", "any-model"])),
        "max_tokens": draw(st.integers(1, 128000)),
        "messages": messages,
    }
    for key, strategy in anthropic_optional.items():
        if draw(st.booleans()):
            body[key] = draw(strategy)
    refused = refused or anthropic_tools_refused(body)
    return body, refused or image_count(messages) > MAX_IMAGES


anthropic_headers = st.fixed_dictionaries({}, optional={
    "anthropic-version": st.just("2023-06-01"),
    "anthropic-beta": st.sampled_from([
        "claude-code-20250219,interleaved-thinking-2025-05-14,context-management-2025-06-27",
        "mcp-client-2025-04-04", "a-beta-from-the-future-2031-01-01"]),
})

# -- OpenAI ------------------------------------------------------------------------------


@st.composite
def openai_parts(draw, role: str = "user"):
    """(part, refused) for every content part type, in a message of `role` (only user
    messages carry images)."""
    kind = draw(st.sampled_from(["text"] * 10 + ["refusal", "file-text"] * 3
                                + ["image", "image-string", "image-remote", "image-tiff",
                                   "audio", "file-pdf", "file-id"]))
    if kind == "text":
        return {"type": "text", "text": draw(words)}, False
    if kind == "refusal":
        return {"type": "refusal", "refusal": draw(words)}, False
    if kind == "image":
        detail = draw(st.sampled_from(["auto", "low", "high"]))
        return ({"type": "image_url", "image_url": {"url": data_url(), "detail": detail}},
                role != "user")
    if kind == "image-string":  # the older form: the URL itself
        return {"type": "image_url", "image_url": data_url((5, 5, 5))}, role != "user"
    if kind == "image-remote":
        return {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}, True
    if kind == "image-tiff":
        return {"type": "image_url",
                "image_url": {"url": "data:image/tiff;base64," + png_b64()}}, True
    if kind == "audio":
        return {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}}, True
    if kind == "file-text":
        data = _b64(draw(any_text))
        if draw(st.booleans()):
            data = "data:text/plain;base64," + data
        return {"type": "file", "file": {"filename": "notes.txt", "file_data": data}}, False
    if kind == "file-pdf":
        return {"type": "file", "file": {"filename": "a.pdf",
                                         "file_data": "data:application/pdf;base64,JVBERi0="}}, True
    return {"type": "file", "file": {"file_id": "file-abc"}}, True


tool_calls = st.lists(st.one_of(
    st.builds(lambda i, n, a: {"id": i, "type": "function",
                               "function": {"name": n, "arguments": a}},
              ids, words, st.just('{"path": "a.txt"}') | any_text),
    st.builds(lambda i, n, a: {"id": i, "type": "custom", "custom": {"name": n, "input": a}},
              ids, words, any_text),
), min_size=1, max_size=3)


@st.composite
def openai_messages(draw):
    """(messages, refused): every role, the last one a user message with text."""
    messages, refused = [], False
    for _ in range(draw(st.integers(0, 5))):
        role = draw(st.sampled_from(["system", "developer", "user", "assistant", "tool",
                                     "function"]))
        message: dict = {"role": role}
        parts_refused = False
        if draw(st.booleans()):
            message["content"] = draw(any_text)
        else:
            drawn = draw(st.lists(openai_parts(role), min_size=1, max_size=3))
            message["content"] = [part for part, _ in drawn]
            parts_refused = any(r for _, r in drawn)
        if role == "assistant" and draw(st.booleans()):
            message["tool_calls"] = draw(tool_calls)
            if draw(st.booleans()):
                message["content"] = None
                parts_refused = False  # the parts that would be refused are gone
        refused = refused or parts_refused
        if role == "tool":
            message["tool_call_id"] = draw(ids)
        if role in ("function", "user") and draw(st.booleans()):
            message["name"] = draw(words)
        messages.append(message)
    messages.append({"role": "user", "content": draw(words)})
    return messages, refused


openai_optional = {
    "stream": st.booleans(),
    "stream_options": st.fixed_dictionaries({"include_usage": st.booleans()}),
    "max_tokens": st.integers(1, 10**6),
    "max_completion_tokens": st.integers(1, 10**6),
    "metadata": st.dictionaries(st.text(min_size=1, max_size=8), any_text, max_size=2),
    "tools": st.lists(st.builds(lambda n: {"type": "function", "function": {
        "name": n, "description": "d", "parameters": {"type": "object", "properties": {}},
        "strict": True}}, words), max_size=3),
    "tool_choice": st.sampled_from(["auto", "none", "required",
                                    {"type": "function", "function": {"name": "f"}}]),
    "parallel_tool_calls": st.booleans(),
    "response_format": st.sampled_from([
        {"type": "text"}, {"type": "json_object"},
        {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}},
        {"type": "json_schema", "json_schema": {"name": "y", "strict": True, "schema": {
            "type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"],
            "additionalProperties": False}}}]),
    "reasoning_effort": st.sampled_from(["none", "minimal", "low", "medium", "high", "xhigh"]),
    "verbosity": st.sampled_from(["low", "medium", "high"]),
    "store": st.booleans(),
    "prediction": st.builds(lambda t: {"type": "content", "content": t}, any_text),
    "service_tier": st.sampled_from(["auto", "default", "flex", "priority"]),
    "user": words,
    "safety_identifier": words,
    "prompt_cache_key": words,
    "seed": st.integers(-(2**31), 2**31),
    "temperature": st.floats(0, 2),
    "top_p": st.floats(0, 1),
    "stop": words | st.lists(words, max_size=4),
    "presence_penalty": st.floats(-2, 2),
    "frequency_penalty": st.floats(-2, 2),
    "logit_bias": st.dictionaries(st.from_regex(r"[0-9]{1,5}", fullmatch=True),
                                  st.integers(-100, 100), max_size=2),
    "logprobs": st.booleans(),
    "top_logprobs": st.integers(0, 20),
    "web_search_options": st.just({"search_context_size": "low"}),
    "a_field_from_the_future": objects,
}


@st.composite
def openai_requests(draw):
    """(body, refused) for POST /openai/v1/chat/completions, drawing from every field."""
    messages, refused = draw(openai_messages())
    body = {"model": draw(st.sampled_from(["claude", "codex", "gemini", "gpt-5", "gpt-4o",
                                           "o3", "claude-sonnet-4-5", "codex/gpt-5-mini"])),
            "messages": messages}
    for key, strategy in openai_optional.items():
        if draw(st.booleans()):
            body[key] = draw(strategy)
    refused = refused or image_count(messages) > MAX_IMAGES or openai_tools_refused(body)
    if draw(st.booleans()):
        body["n"] = draw(st.integers(1, 3))
        refused = refused or body["n"] > 1
    if draw(st.booleans()):
        body["modalities"] = draw(st.sampled_from([["text"], ["text", "audio"]]))
        if "audio" in body["modalities"]:
            body["audio"] = {"voice": "alloy", "format": "wav"}
            refused = True
    return body, refused


# -- client tools ------------------------------------------------------------------------

_TOOL_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


def _bad_tool_names(names: list) -> bool:
    return (any(not isinstance(n, str) or not _TOOL_NAME.fullmatch(n) for n in names)
            or len(set(names)) != len(names))


def openai_tools_refused(body: dict) -> bool:
    """Whether a chat request with client tools is a 400: a tool name that is not 1-64
    of [A-Za-z0-9_-] or is given twice, a tool_choice naming no tool, or a `tool` message
    after the last assistant message answering no call of the conversation."""
    tools = body.get("tools")
    if not tools:
        return False
    names = [t["function"]["name"] for t in tools]
    if _bad_tool_names(names):
        return True
    choice = body.get("tool_choice")
    if isinstance(choice, dict) and choice["function"]["name"] not in names:
        return True
    messages = body["messages"]
    start = max((i + 1 for i, m in enumerate(messages) if m["role"] == "assistant"), default=0)
    known = {c["id"] for m in messages if m["role"] == "assistant"
             for c in m.get("tool_calls") or () if c.get("id")}
    return any(m["role"] == "tool" and (not m.get("tool_call_id") or m["tool_call_id"] not in known)
               for m in messages[start:])


def anthropic_tools_refused(body: dict) -> bool:
    """Whether a messages request with client tools is a 400: bad or repeated tool names,
    a tool_choice naming no client tool, or a tool_result in the last message answering no
    tool_use block of the conversation."""
    client = [t for t in body.get("tools") or () if t.get("type") in (None, "custom")]
    if not client:
        return False
    names = [t["name"] for t in client]
    if _bad_tool_names(names):
        return True
    choice = body.get("tool_choice")
    if choice and choice["type"] == "tool" and choice.get("name") not in names:
        return True
    messages = body["messages"]
    last = messages[-1]
    if last["role"] != "user" or isinstance(last["content"], str):
        return False
    known = {b["id"] for m in messages if m["role"] == "assistant"
             and not isinstance(m["content"], str)
             for b in m["content"] if b.get("type") == "tool_use" and b.get("id")}
    return any(b.get("type") == "tool_result"
               and (not b.get("tool_use_id") or b["tool_use_id"] not in known)
               for b in last["content"])
