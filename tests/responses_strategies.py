"""Hypothesis strategies for OpenAI Responses API request bodies: well-formed input shapes
(with the parts clinvk refuses) and arbitrary JSON where the input goes."""

from __future__ import annotations

from hypothesis import strategies as st

from clinvk.domain.config import ServerConfig
from tests.support.images import data_url

#: Most images a request may carry under the default config.
MAX_IMAGES = ServerConfig().max_images

_chars = st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")
words = st.text(alphabet=_chars, min_size=1, max_size=20).filter(lambda s: s.strip())
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)

_TEXT_PARTS = ("input_text", "output_text")
_REFUSED_PARTS = ("input_image", "input_file", "input_audio")


@st.composite
def parts(draw):
    """`(part, refused, image)`: a content part, whether clinvk must refuse it wherever it
    is, and whether it is an image clinvk carries (in user messages and tool outputs)."""
    kind = draw(st.sampled_from(_TEXT_PARTS + _REFUSED_PARTS + ("refusal", "image")))
    if kind == "image":
        return {"type": "input_image", "image_url": data_url(), "detail": "auto"}, False, True
    if kind in _REFUSED_PARTS:  # an input_image whose data is not an image is refused
        return {"type": kind, "image_url": "data:image/png;base64,AA=="}, True, False
    if kind == "refusal":
        return {"type": kind, "refusal": draw(words)}, False, False
    return {"type": kind, "text": draw(words)}, False, False


@st.composite
def contents(draw):
    """`(content, refused, images)`: a string, or a list of parts (`images`: how many
    images clinvk would carry)."""
    if draw(st.booleans()):
        return draw(words), False, 0
    drawn = draw(st.lists(parts(), min_size=1, max_size=3))
    return [p for p, _, _ in drawn], any(r for _, r, _ in drawn), sum(i for _, _, i in drawn)


@st.composite
def items(draw):
    """`(item, refused)`: one input item of any shape clinvk takes."""
    kind = draw(st.sampled_from(("easy", "message", "function_call", "function_call_output",
                                 "custom_tool_call", "custom_tool_call_output",
                                 "local_shell_call", "reasoning", "additional_tools")))
    if kind == "function_call":
        return {"type": kind, "call_id": draw(words), "name": draw(words),
                "arguments": draw(words)}, False
    if kind == "custom_tool_call":
        return {"type": kind, "call_id": draw(words), "name": draw(words),
                "input": draw(words)}, False
    if kind == "local_shell_call":
        return {"type": kind, "call_id": draw(words), "status": "completed",
                "action": {"type": "exec", "command": draw(st.lists(words, max_size=3))}}, False
    if kind == "reasoning":  # accepted, left out of the prompt
        return {"type": kind, "id": "rs_" + draw(words), "summary": [],
                "encrypted_content": draw(words)}, False
    if kind == "additional_tools":  # codex's tool list: accepted, left out of the prompt
        return {"type": kind, "role": "developer", "tools": draw(json_values)}, False
    content, refused, images = draw(contents())
    if kind in ("function_call_output", "custom_tool_call_output"):
        return {"type": kind, "call_id": draw(words), "output": content}, (refused, images)
    role = draw(st.sampled_from(("user", "system", "developer", "assistant")))
    item = {"role": role, "content": content}
    if kind == "message":
        item["type"] = "message"
    # Images are carried in user messages only.
    return item, (refused or (images > 0 and role != "user"), images)


@st.composite
def requests(draw):
    """`(body, refused)`: a Responses request with a well-formed input."""
    body: dict = {"model": draw(st.sampled_from(("claude", "gpt-5", "gemini-2.5-pro")))}
    if draw(st.booleans()):
        body["input"], refused = draw(words), False
    else:
        drawn = draw(st.lists(items(), min_size=1, max_size=4))
        # A user message last, so there is always something to answer.
        drawn.append(({"role": "user", "content": draw(words)}, False))
        body["input"] = [i for i, _ in drawn]
        marks = [m if isinstance(m, tuple) else (m, 0) for _, m in drawn]
        refused = any(r for r, _ in marks) or sum(n for _, n in marks) > MAX_IMAGES
    if draw(st.booleans()):
        body["instructions"] = draw(words)
    for name, values in (("temperature", st.floats(0, 2)), ("top_p", st.floats(0, 1)),
                         ("truncation", st.sampled_from(("auto", "disabled"))),
                         ("reasoning", st.just({"effort": "low"})),
                         ("text", st.just({"format": {"type": "text"}})),
                         ("store", st.booleans()),
                         ("unknown_extra_field", json_values)):
        if draw(st.booleans()):
            body[name] = draw(values)
    return body, refused


#: Arbitrary JSON where `input` goes (and sometimes as the whole body).
bad_bodies = st.one_of(
    st.builds(lambda v: {"model": "claude", "input": v}, json_values),
    st.builds(lambda v: {"model": "claude", "input": [v]}, json_values),
    st.builds(lambda v: {"model": "claude", "input": [{"role": "user", "content": v}]},
              json_values),
    st.builds(lambda v: {"model": "claude", "input": [{"type": v, "content": "x"}]},
              json_values),
    st.builds(lambda v: {"model": "claude", "input": "hi", "previous_response_id": v},
              json_values),
    json_values,
)
