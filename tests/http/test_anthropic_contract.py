"""Property-based contract tests of the Anthropic dialect: requests keep their text,
any body gets a 2xx or a 4xx in Anthropic's envelope, and every stream we can write is
read back by the `anthropic` SDK's own stream parser."""

from __future__ import annotations

import json

import anthropic
import httpx2
import msgspec
import pytest
from anthropic import Anthropic, Stream
from anthropic.lib.streaming import MessageStream
from anthropic.types import RawMessageStreamEvent
from hypothesis import event, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from clinvk.adapters.http.anthropic.schemas import decode_messages_request
from clinvk.adapters.http.anthropic.stream import PING, MessageStreamWriter
from clinvk.adapters.http.anthropic.translate import conversation, to_prompt_request
from clinvk.adapters.http.app import create_app
from clinvk.domain import events as ev
from clinvk.domain.config import Config, ServerConfig
from clinvk.domain.errors import BackendFailed, BackendTimeout, InvalidRequest
from clinvk.domain.models import PromptResult, TokenUsage
from clinvk.entrypoints.bootstrap import bootstrap
from tests.fakes import FakeBackendRunner, FakeClock, FakeIds, FakeSessionStore
from tests.strategies import json_values

ERROR_TYPES = {
    "invalid_request_error", "authentication_error", "permission_error", "not_found_error",
    "request_too_large", "rate_limit_error", "api_error", "overloaded_error", "timeout_error",
}
BACKENDS = ["claude", "codex", "gemini"]

# -- strategies ------------------------------------------------------------------------

# Dialect-specific strategies; the generic ones come from tests/strategies.py.
text = st.text(max_size=30)
dropped_blocks = st.sampled_from([
    {"type": "thinking", "thinking": "hmm", "signature": "sig"},
    {"type": "redacted_thinking", "data": "opaque"},
])
text_blocks = st.builds(lambda t: {"type": "text", "text": t}, text)


@st.composite
def messages(draw):
    """1-6 turns of every role; each content a string or text blocks with thinking blocks
    mixed in."""
    out = []
    for _ in range(draw(st.integers(1, 6))):
        role = draw(st.sampled_from(["user", "assistant", "system"]))
        if draw(st.booleans()):
            content = draw(text)
        else:
            content = draw(st.lists(text_blocks | dropped_blocks, max_size=4))
        out.append({"role": role, "content": content})
    return out


def expected_turns(msgs: list[dict]) -> list[tuple[str, str]] | None:
    """The (role, text) turns a request must become; None when it must be refused."""
    turns = []
    for m in msgs:
        content = m["content"]
        if isinstance(content, str):
            joined = content
        else:
            joined = "\n".join(b["text"] for b in content if b["type"] == "text" and b["text"])
        if not joined.strip():
            if m["role"] == "user":
                return None
            continue  # an assistant or system turn with nothing to say is dropped
        turns.append((m["role"], joined))
    return turns


HISTORY = "The conversation so far, as a JSON array of messages, oldest first:"
AFTER = "System messages sent after the latest user message, as a JSON array:"
REPLY = "Reply to this latest user message:"
CONTINUE = "Continue the conversation as the assistant."


def unrender(prompt: str) -> list[tuple[str, str]]:
    """Read the turns back out of the shared renderer's layout."""
    if not prompt.startswith((HISTORY + "\n", AFTER + "\n")):
        return [("user", prompt)]
    turns: list[tuple[str, str]] = []
    after: list[tuple[str, str]] = []
    rest = prompt
    for header, into in ((HISTORY, turns), (AFTER, after)):
        if rest.startswith(header + "\n"):
            _, history, blank, rest = rest.split("\n", 3)
            assert blank == ""
            into += [(t["role"], t["content"]) for t in json.loads(history)]
    if rest == CONTINUE:
        assert not after
        return turns
    lead, last = rest.split("\n", 1)
    assert lead == REPLY
    return [*turns, ("user", last), *after]


workdirs = st.sampled_from(["/tmp", "/etc", "relative", "/no/such/dir", "/tmp/a\x00b", "", 7])
clinvk_options = st.fixed_dictionaries({}, optional={
    "workdir": workdirs,
    "approval_mode": st.sampled_from(["default", "auto", "none", "always", "yes", 1]),
    "sandbox_mode": st.sampled_from(["default", "read-only", "workspace", "full", "x"]),
    "max_turns": st.integers(-2, 5) | text,
    "session_id": st.sampled_from(["s1", "nope", "", "../x"]) | text,
    "ephemeral": st.booleans() | text,
    "bogus": json_values,
})
blocks = st.fixed_dictionaries(
    {"type": st.sampled_from(["text", "image", "document", "tool_use", "tool_result",
                              "thinking", "redacted_thinking", "mystery"]) | json_values},
    optional={"text": text | json_values, "source": json_values},
)
optional_fields = st.fixed_dictionaries({}, optional={
    "system": text | st.lists(blocks, max_size=2),
    "stream": st.booleans(),
    "metadata": st.dictionaries(text, json_values, max_size=2),
    "temperature": st.floats(0, 1),
    "stop_sequences": st.lists(text, max_size=2),
    "clinvk": clinvk_options,
    "extra_field": json_values,
})


@st.composite
def near_valid_bodies(draw):
    """A plausible request with a few of its fields (or none) replaced by any JSON, so most
    examples get past decoding and exercise translation and the domain."""
    body = {
        "model": draw(st.sampled_from(BACKENDS + ["gpt-5", "claude/", "/", "x/y", ""])),
        "max_tokens": draw(st.integers(-3, 10**6)),
        "messages": draw(messages() | st.lists(
            st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant", "system"]),
                                   "content": text | st.lists(blocks, max_size=3)}),
            max_size=3)),
        **draw(optional_fields),
    }
    for key in draw(st.lists(st.sampled_from(sorted(body)), max_size=2, unique=True)):
        if draw(st.booleans()):
            body[key] = draw(json_values)
        else:
            del body[key]
    return body


@st.composite
def domain_runs(draw):
    """Unified events as a CLI run emits them, and how the run ends."""
    events: list[ev.StreamEvent] = [ev.Init(backend_session_id="t", session_id="s1")]
    kinds = st.sampled_from(["delta", "message", "tool", "notice", "usage"])
    for kind in draw(st.lists(kinds, max_size=12)):
        if kind == "delta":
            events.append(ev.TextDelta(text=draw(text)))
        elif kind == "message":
            events.append(ev.Message(text=draw(text)))
        elif kind == "tool":
            events.append(ev.ToolUse(name="Bash", input={"command": draw(text)}))
        elif kind == "notice":
            events.append(ev.Notice(message=draw(text)))
        else:
            events.append(ev.Usage(usage=TokenUsage(input_tokens=draw(st.integers(0, 99)))))
    ending = draw(st.sampled_from(["end", "max_tokens", "max_turns", "failed", "timeout"]))
    usage = TokenUsage(input_tokens=draw(st.integers(0, 10**6)),
                       output_tokens=draw(st.integers(0, 10**6)),
                       cached_tokens=draw(st.integers(0, 10)))
    return events, ending, usage


def expected_text(events: list[ev.StreamEvent]) -> str:
    """Deltas as they come; a whole message only when no delta since the last one carried it."""
    out, streamed = [], False
    for event in events:
        if isinstance(event, ev.TextDelta):
            out.append(event.text)
            streamed = True
        elif isinstance(event, ev.Message):
            if not streamed:
                out.append(event.text)
            streamed = False
    return "".join(out)


# -- request translation -----------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(msgs=messages(), system=st.none() | text | st.lists(text_blocks, max_size=3))
def test_translation_keeps_every_text_block_in_order(msgs, system):
    """Every text block of every role reaches the CLI prompt, in order and unchanged (system
    turns in place); thinking is dropped."""
    raw = msgspec.json.encode({"model": "claude", "max_tokens": 5, "messages": msgs,
                               "system": system})
    body = decode_messages_request(raw)
    want = expected_turns(msgs)
    if want is None:
        with pytest.raises(InvalidRequest) as refused:
            conversation(body.messages)
        assert refused.value.field.startswith("messages.")
        return
    assert [(t.role, t.text) for t in conversation(body.messages)] == want
    if not want:
        return  # nothing to send; the domain refuses an empty prompt
    request = to_prompt_request(body, Config(), BACKENDS)
    assert unrender(request.prompt) == want
    if isinstance(system, list):
        system = "\n".join(b["text"] for b in system if b["text"])
    assert request.system_prompt == (system or None)
    assert request.max_tokens == 5 and request.backend == "claude"


# -- arbitrary bodies --------------------------------------------------------------------


@pytest.fixture(scope="module")
def contract_client(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("work")
    config = Config(server=ServerConfig(default_workdir=str(workdir), heartbeat_secs=5))
    services = bootstrap(config, runner=FakeBackendRunner(), store=FakeSessionStore(),
                         clock=FakeClock(), ids=FakeIds())
    with TestClient(create_app(services)) as client:
        client.post("/anthropic/v1/messages", json={
            "model": "claude", "max_tokens": 1, "messages": [{"role": "user", "content": "x"}]})
        yield client


def check_answer(r) -> None:
    event(f"status {r.status_code}")
    assert r.status_code < 500, (r.status_code, r.text)
    if r.status_code >= 400:
        payload = r.json()
        assert set(payload) == {"type", "error"} and payload["type"] == "error"
        assert payload["error"]["type"] in ERROR_TYPES
        assert isinstance(payload["error"]["message"], str)


@settings(max_examples=150, deadline=None)
@given(payload=json_values | near_valid_bodies())
def test_arbitrary_bodies_are_answered_or_refused_in_the_envelope(contract_client, payload):
    """Any JSON body gets a 2xx or a 4xx in Anthropic's error envelope, never a 5xx."""
    raw = json.dumps(payload).encode()  # infinities go out as `Infinity`: not JSON, a 400
    check_answer(contract_client.post("/anthropic/v1/messages", content=raw,
                                      headers={"content-type": "application/json"}))


@settings(max_examples=50, deadline=None)
@given(raw=st.binary(max_size=60))
def test_arbitrary_bytes_are_refused_in_the_envelope(contract_client, raw):
    """Bytes that are not a JSON object are a 4xx in the envelope, never a 5xx."""
    check_answer(contract_client.post("/anthropic/v1/messages", content=raw,
                                      headers={"content-type": "application/json"}))


# -- streams through the SDK's parser ----------------------------------------------------


@pytest.fixture(scope="module")
def sdk_client():
    with Anthropic(api_key="not-needed", base_url="http://clinvk.test") as client:
        yield client


def sdk_stream(client: Anthropic, data: bytes, cuts: list[int]) -> MessageStream:
    """The SDK's MessageStream over `data`, delivered in pieces cut at `cuts`."""
    edges = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    chunks = [data[a:b] for a, b in zip(edges, edges[1:])]
    response = httpx2.Response(
        200, headers={"content-type": "text/event-stream"}, content=iter(chunks),
        request=httpx2.Request("POST", "http://clinvk.test/v1/messages"),
    )
    raw = Stream(cast_to=RawMessageStreamEvent, response=response, client=client)
    return MessageStream(raw, output_format=anthropic.NOT_GIVEN)


@settings(max_examples=150, deadline=None)
@given(run=domain_runs(), pings=st.lists(st.integers(0, 30), max_size=3),
       cuts=st.lists(st.integers(0, 10**4), max_size=8))
def test_every_stream_is_read_by_the_sdk(sdk_client, run, pings, cuts):
    """Whatever the CLI emits, the SDK's stream helpers read our SSE back into the same
    text, stop reason and usage (or raise the API error a failed run ends with)."""
    events, ending, usage = run
    writer = MessageStreamWriter(id="msg_test", model="claude")
    frames = [writer.event(e) for e in events]
    for position in pings:
        frames.insert(position % (len(frames) + 1), PING)
    if ending in ("failed", "timeout"):
        exc = (BackendFailed("claude", "API Error: 500 boom") if ending == "failed"
               else BackendTimeout("claude", 3))
        frames.append(writer.error(exc))
    else:
        frames.append(writer.close(PromptResult(
            session_id="s1", backend="claude", exit_code=0, duration_ms=1, output="",
            token_usage=usage, stop_reason=ending)))
    stream = sdk_stream(sdk_client, b"".join(frames), cuts)

    if ending in ("failed", "timeout"):
        with pytest.raises(anthropic.APIStatusError) as failed:
            "".join(stream.text_stream)
        kind = "api_error" if ending == "failed" else "timeout_error"
        assert failed.value.body["error"]["type"] == kind
        return
    assert "".join(stream.text_stream) == expected_text(events)
    final = stream.get_final_message()
    assert final.id == "msg_test" and final.model == "claude"
    assert [b.type for b in final.content] == ["text"]
    assert final.content[0].text == expected_text(events)
    assert final.stop_reason == ("end_turn" if ending == "end" else "max_tokens")
    assert final.usage.input_tokens == max(0, usage.input_tokens - usage.cached_tokens)
    assert final.usage.output_tokens == usage.output_tokens
    assert final.usage.cache_read_input_tokens == (usage.cached_tokens or None)
