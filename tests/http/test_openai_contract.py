"""Property-based contract of the OpenAI dialect: translation keeps every message's text,
no body ever causes a 5xx, and every stream parses the way the SDK reads it.

The strategies live here, in one place; fields with constraints get explicit strategies.
"""

from __future__ import annotations

import json

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openai._streaming import SSEDecoder
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from clinvk.adapters.http.openai.schemas import chat_request_decoder
from clinvk.adapters.http.openai.translate import (
    PART_SEPARATOR,
    SYSTEM_SEPARATOR,
    to_prompt_request,
)
from clinvk.domain.chat import tool_result_text
from clinvk.domain.config import Config

URL = "/openai/v1/chat/completions"
BACKENDS = ["claude", "codex", "gemini"]
FIXTURES = [HealthCheck.function_scoped_fixture]  # one app per test is enough: runs are independent

# -- strategies ---------------------------------------------------------------------------

texts = st.text(max_size=40)
text_parts = st.lists(texts, min_size=1, max_size=3)
#: A message content and the text it carries (parts joined as the translator documents).
contents = st.one_of(
    texts.map(lambda t: (t, t)),
    text_parts.map(lambda ts: ([{"type": "text", "text": t} for t in ts], PART_SEPARATOR.join(ts))),
)
conversation_roles = st.sampled_from(["user", "assistant", "tool"])
system_roles = st.sampled_from(["system", "developer"])
models = st.one_of(
    st.sampled_from(BACKENDS + ["gpt-5", "claude-opus-4-1", "gemini-2.5-pro", "codex/o3", "x"]),
    texts.filter(lambda t: "\x00" not in t),
)


@st.composite
def chat_requests(draw):
    """A valid chat request (as JSON-able dict) with the texts it must keep, in order."""
    system, turns, messages = [], [], []
    for _ in range(draw(st.integers(0, 6))):
        role = draw(st.one_of(system_roles, conversation_roles))
        content, text = draw(contents)
        messages.append({"role": role, "content": content})
        if role == "tool":
            text = tool_result_text(None, text)  # a result without a call id
        (system if role in ("system", "developer") else turns).append((role, text))
    content, text = draw(contents.filter(lambda c: c[1].strip()))
    messages.append({"role": "user", "content": content})
    turns.append(("user", text))
    body = {"model": draw(models), "messages": messages}
    optional = {
        "max_tokens": st.integers(1, 10**6),
        "max_completion_tokens": st.integers(1, 10**6),
        "temperature": st.floats(0, 2),
        "stream": st.booleans(),
        "n": st.just(1),
        "user": texts,
    }
    for key, strategy in optional.items():
        if draw(st.booleans()):
            body[key] = draw(strategy)
    return body, system, turns


def parse_prompt(prompt: str) -> list[tuple[str, str]]:
    """Read the documented conversation layout back into (role, text) turns."""
    head = "The conversation so far, as a JSON array of messages, oldest first:\n"
    if not prompt.startswith(head):
        return [("user", prompt)]
    history_line, _, rest = prompt[len(head):].partition("\n")
    turns = [(m["role"], m["content"]) for m in json.loads(history_line)]
    reply = "\nReply to this latest user message:\n"
    if rest.startswith(reply):
        turns.append(("user", rest[len(reply):]))
    else:
        assert rest == "\nContinue the conversation as the assistant."
    return turns


json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1), st.floats(allow_nan=False), texts
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(texts, inner, max_size=4)),
    max_leaves=12,
)
#: Arbitrary values under the field names the dialect knows, so decoding goes deep.
message_like = st.fixed_dictionaries(
    {},
    optional={
        "role": st.one_of(st.sampled_from(["system", "developer", "user", "assistant", "tool"]),
                          json_values),
        "content": st.one_of(texts, st.lists(st.fixed_dictionaries(
            {"type": st.one_of(st.sampled_from(["text", "refusal", "image_url", "file"]),
                               json_values)},
            optional={"text": json_values, "refusal": json_values},
        ), max_size=3), json_values),
        "tool_calls": json_values,
        "name": json_values,
    },
)
body_like = st.fixed_dictionaries(
    {},
    optional={
        "model": st.one_of(models, st.just("gpt\x00"), json_values),
        "messages": st.one_of(st.lists(message_like, max_size=4), json_values),
        "stream": st.one_of(st.booleans(), json_values),
        "stream_options": st.one_of(
            st.fixed_dictionaries({}, optional={"include_usage": st.booleans()}), json_values
        ),
        "n": st.one_of(st.integers(-2, 3), json_values),
        "max_tokens": st.one_of(st.integers(-2, 10), json_values),
        "max_completion_tokens": st.one_of(st.integers(-2, 10), json_values),
        "metadata": json_values,
        "clinvk": st.one_of(
            st.fixed_dictionaries({}, optional={
                "workdir": st.one_of(
                    texts, st.sampled_from(["/tmp", "/tmp/\x00x", "/etc", "rel"]), json_values
                ),
                "approval_mode": st.one_of(
                    st.sampled_from(["default", "auto", "bad"]), json_values
                ),
                "sandbox_mode": st.one_of(
                    st.sampled_from(["default", "full", "bad"]), json_values
                ),
                "max_turns": st.one_of(st.integers(-1, 5), json_values),
                "session_id": st.one_of(texts, json_values),
                "ephemeral": st.one_of(st.booleans(), json_values),
            }),
            json_values,
        ),
        "extra_field": json_values,
    },
)
raw_bodies = st.one_of(
    body_like.map(lambda b: json.dumps(b).encode()),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=64),
)

# -- properties ---------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(chat_requests())
def test_valid_requests_keep_every_text_in_order(case):
    """Any valid chat request decodes and translates into a domain request whose prompt and
    system prompt carry every message's text, in order."""
    body, system, turns = case
    request = chat_request_decoder.decode(json.dumps(body).encode())
    prompt = to_prompt_request(request, config=Config(), backends=BACKENDS)
    assert prompt.backend in BACKENDS
    assert prompt.system_prompt == (SYSTEM_SEPARATOR.join(t for _, t in system) or None)
    assert parse_prompt(prompt.prompt) == turns
    assert prompt.max_tokens == (body.get("max_completion_tokens") or body.get("max_tokens"))


@settings(max_examples=200, deadline=None, suppress_health_check=FIXTURES)
@given(raw_bodies)
def test_any_body_is_2xx_or_a_4xx_envelope(client, raw):
    """Any body, valid or not, gets a 2xx or a 4xx in OpenAI's envelope, never a 5xx."""
    r = client.post(URL, content=raw, headers={"content-type": "application/json"})
    assert r.status_code < 500, r.text
    if r.status_code >= 400:
        error = r.json()["error"]
        assert set(error) == {"message", "type", "param", "code"}
        assert isinstance(error["message"], str) and error["message"]
    elif r.headers["content-type"].startswith("text/event-stream"):
        assert r.text.endswith("data: [DONE]\n\n")
    else:
        ChatCompletion.model_validate(r.json())


# CLI output is decoded JSON, which never holds lone surrogates (msgspec refuses them).
_reply_chars = st.characters(blacklist_characters=" ", blacklist_categories=("Cs",))
replies = st.lists(st.text(_reply_chars, max_size=8), min_size=1, max_size=6).map(" ".join)


@settings(max_examples=100, deadline=None, suppress_health_check=FIXTURES)
@given(reply=replies, include_usage=st.booleans(), fail=st.booleans(), model=models)
def test_stream_chunks_parse_as_the_sdk_expects(client, runner, reply, include_usage, fail, model):
    """Every stream decodes with the SDK's SSE decoder into ChatCompletionChunks in the
    documented order, whose text equals the answer; a failure ends in one error event."""
    runner.reply, runner.fail = reply, ("boom" if fail else None)
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": True,
            "stream_options": {"include_usage": include_usage}}
    with client.stream("POST", URL, json=body) as r:
        if fail and not reply:
            # Failed before any text: the stream had not started, so the failure is an
            # ordinary error response (the SDK raises its APIStatusError).
            assert r.status_code == 502
            assert json.loads(r.read())["error"]["code"] == "backend_failed"
            return
        assert r.status_code == 200
        events = list(SSEDecoder().iter_bytes(r.iter_raw()))
    assert all(e.event is None for e in events)
    datas = [e.data for e in events]
    if fail:
        assert "[DONE]" not in datas
        assert json.loads(datas[-1])["error"]["code"] == "backend_failed"
        datas = datas[:-1]
    else:
        assert datas[-1] == "[DONE]"
        datas = datas[:-1]
    chunks = [ChatCompletionChunk.model_validate(json.loads(d)) for d in datas]
    assert len({c.id for c in chunks}) == 1 and all(c.model == model for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    if fail:
        assert reply.startswith(text)
        assert all(c.choices[0].finish_reason is None for c in chunks)
        return
    assert text == reply
    if include_usage:
        *chunks, last = chunks
        assert last.choices == [] and last.usage is not None and last.usage.total_tokens == 6
        assert all(c.usage is None for c in chunks)
    assert [c.choices[0].finish_reason for c in chunks] == [None] * (len(chunks) - 1) + ["stop"]


@pytest.mark.parametrize("field", ["max_tokens", "max_completion_tokens", "n"])
def test_constrained_fields_reject_non_positive_values(field):
    """The Meta constraints hypothesis cannot see are enforced on decode."""
    raw = {"model": "claude", "messages": [{"role": "user", "content": "x"}], field: 0}
    with pytest.raises(msgspec.ValidationError, match=field):
        chat_request_decoder.decode(json.dumps(raw).encode())
