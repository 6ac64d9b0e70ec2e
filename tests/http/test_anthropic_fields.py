"""The Anthropic dialect takes every field and content block Anthropic's Messages API takes
(in-process, on fakes): system turns in `messages`, tool calls and results, documents,
server-tool blocks and unknown blocks as readable text, the request fields clients send,
`anthropic-beta` and `?beta=true`, and /messages/count_tokens."""

from __future__ import annotations

import base64
import json

import anthropic
import httpx2
import pytest
from anthropic import Anthropic, Stream
from anthropic.lib.streaming import MessageStream
from anthropic.types import RawMessageStreamEvent
from hypothesis import event, given, settings
from starlette.testclient import TestClient

from clinvk.adapters.http.anthropic.translate import CHARS_PER_TOKEN
from clinvk.adapters.http.app import create_app
from clinvk.domain.chat import Turn, render_conversation
from clinvk.domain.config import Config, ServerConfig
from clinvk.entrypoints.bootstrap import bootstrap
from tests.chat_strategies import anthropic_headers, anthropic_requests
from tests.fakes import FakeBackendRunner, FakeClock, FakeIds, FakeSessionStore

URL = "/anthropic/v1/messages"
COUNT_URL = "/anthropic/v1/messages/count_tokens"


def body(**fields):
    return {"model": "claude", "max_tokens": 1024,
            "messages": [{"role": "user", "content": "Hello!"}], **fields}


def sent_prompt(client, runner, messages) -> str:
    r = client.post(URL, json=body(messages=messages))
    assert r.status_code == 200, r.text
    return runner.runs[-1].prompt


# -- messages and blocks -------------------------------------------------------------------


def test_a_system_turn_in_messages_is_rendered_before_the_latest_user_message(client, runner):
    """A `system` turn after the last user message comes as its own labelled array, and the
    user's words stay last and verbatim."""
    prompt = sent_prompt(client, runner, [{"role": "user", "content": "hi"},
                                          {"role": "system", "content": "Agents: A, B"}])
    assert prompt == (
        "System messages sent after the latest user message, as a JSON array:\n"
        '[{"role":"system","content":"Agents: A, B"}]\n\n'
        "Reply to this latest user message:\nhi"
    )


def test_a_system_turn_between_turns_stays_in_place_in_the_history(client, runner):
    """A `system` turn between earlier turns is one of the history's messages, in order."""
    messages = [{"role": "user", "content": "a"}, {"role": "system", "content": "b"},
                {"role": "assistant", "content": "c"}, {"role": "user", "content": "d"}]
    assert sent_prompt(client, runner, messages) == render_conversation([
        Turn(role="user", text="a"), Turn(role="system", text="b"),
        Turn(role="assistant", text="c"), Turn(role="user", text="d")])


def test_tool_calls_and_results_are_readable_text_turns(client, runner):
    """tool_use, tool_result (string, blocks, error) and server-tool blocks become lines the
    CLI's model can read."""
    messages = [
        {"role": "user", "content": "List the files"},
        {"role": "assistant", "content": [
            {"type": "text", "text": "Looking."},
            {"type": "tool_use", "id": "toolu_1", "name": "Bash", "input": {"command": "ls"}},
            {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search",
             "input": {"query": "clinvk"}},
            {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1", "content": [
                {"type": "web_search_result", "url": "https://example.com", "title": "Ex",
                 "encrypted_content": "eyJ9"}]},
            {"type": "mcp_tool_use", "id": "mcptoolu_1", "name": "get_weather",
             "server_name": "weather", "input": {}},
        ]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": "a.txt\nb.txt",
             "cache_control": {"type": "ephemeral"}},
            {"type": "mcp_tool_result", "tool_use_id": "mcptoolu_1", "is_error": True,
             "content": [{"type": "text", "text": "no such city"}]},
            {"type": "text", "text": "Which is newer?"},
        ]},
    ]
    assert sent_prompt(client, runner, messages) == render_conversation([
        Turn(role="user", text="List the files"),
        Turn(role="assistant", text="\n".join([
            "Looking.",
            'Tool call Bash (id toolu_1) with input: {"command":"ls"}',
            'Tool call web_search (id srvtoolu_1) with input: {"query":"clinvk"}',
            "Tool result for srvtoolu_1: Web search result: Ex https://example.com",
            "Tool call weather.get_weather (id mcptoolu_1) with input: {}",
        ])),
        Turn(role="user", text="\n".join([
            "Tool result for toolu_1: a.txt\nb.txt",
            "Tool result for mcptoolu_1 (error): no such city",
            "Which is newer?",
        ])),
    ])


def test_a_user_turn_of_only_tool_results_is_a_turn(client, runner):
    """A user message holding only a tool_result is the latest user message, not a 400."""
    messages = [{"role": "user", "content": "run it"},
                {"role": "assistant", "content": [
                    {"type": "tool_use", "id": "t1", "name": "Bash", "input": {}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1"}]}]
    assert sent_prompt(client, runner, messages).endswith(
        "Reply to this latest user message:\nTool result for t1: ")


@pytest.mark.parametrize(
    ("document", "text"),
    [
        ({"type": "document", "title": "Notes", "context": "from the wiki",
          "source": {"type": "text", "media_type": "text/plain", "data": "line 1"}},
         "Document: Notes\nContext: from the wiki\nline 1"),
        ({"type": "document", "source": {"type": "content", "content": [
            {"type": "text", "text": "part 1"}, {"type": "text", "text": "part 2"}]}},
         "Document:\npart 1\npart 2"),
        ({"type": "document", "source": {"type": "url", "url": "https://example.com/a.pdf"}},
         "Document:\n(to be read at https://example.com/a.pdf)"),
        ({"type": "document", "source": {"type": "base64", "media_type": "text/plain",
                                         "data": base64.b64encode(b"plain text").decode()}},
         "Document:\nplain text"),
        ({"type": "search_result", "source": "https://example.com/doc", "title": "Doc",
          "content": [{"type": "text", "text": "found it"}]},
         "Search result: Doc <https://example.com/doc>\nfound it"),
    ],
)
def test_text_documents_and_search_results_are_carried(client, runner, document, text):
    """Documents that are text (inline, blocks, a URL the CLI may fetch) and search results
    are carried as text."""
    messages = [{"role": "user", "content": [document, {"type": "text", "text": "Summarise"}]}]
    assert sent_prompt(client, runner, messages) == f"{text}\nSummarise"


def test_unknown_block_types_are_tolerated(client, runner):
    """A block type from a newer API is carried by its text or content, or else dropped,
    never a 400; an unknown `*_tool_result` reads as a tool result."""
    messages = [{"role": "user", "content": [
        {"type": "block_from_the_future", "text": "carried"},
        {"type": "container_upload", "file_id": "file_1"},
        {"type": "code_execution_tool_result", "tool_use_id": "s1",
         "content": {"type": "code_execution_result", "stdout": "4", "return_code": 0}},
        {"type": "text", "text": "ok?"},
    ]}]
    assert sent_prompt(client, runner, messages) == "\n".join([
        "carried",
        'Tool result for s1: {"type":"code_execution_result","stdout":"4","return_code":0}',
        "ok?",
    ])


def test_a_wrongly_typed_block_field_is_a_400_naming_it(client):
    """Declared block fields are type-checked as on Anthropic's API."""
    messages = [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": 5}]}]
    r = client.post(URL, json=body(messages=messages))
    assert r.status_code == 400
    assert r.json()["error"]["message"].startswith("messages.0.content.0.tool_use_id:")


def test_continuing_a_session_allows_a_system_turn_after_the_new_user_message(client, runner):
    """With clinvk.session_id, a trailing system turn does not hide the new user message."""
    first = client.post(URL, json=body())
    sid = first.headers["x-clinvk-session-id"]
    messages = [{"role": "user", "content": "Hello!"}, {"role": "assistant", "content": "Hi"},
                {"role": "user", "content": "Again"}, {"role": "system", "content": "Be brief"}]
    r = client.post(URL, json=body(messages=messages, clinvk={"session_id": sid}))
    assert r.status_code == 200, r.text
    assert runner.runs[-1].prompt.endswith("Reply to this latest user message:\nAgain")
    assert "Hello!" not in runner.runs[-1].prompt


# -- request fields, headers, query --------------------------------------------------------


def test_every_request_field_of_a_real_client_is_accepted(client, runner):
    """The fields Claude Code and the SDKs send are accepted with the beta header and query;
    the prompt is unchanged by them."""
    extras = {
        "thinking": {"type": "adaptive"},
        "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
        "output_config": {"effort": "high"},
        "tools": [{"name": "Bash", "description": "run", "input_schema": {"type": "object"}},
                  {"type": "web_search_20250305", "name": "web_search", "max_uses": 3}],
        "tool_choice": {"type": "auto", "disable_parallel_tool_use": True},
        "metadata": {"user_id": '{"device_id":"d"}'},
        "service_tier": "auto",
        "container": "container_1",
        "mcp_servers": [{"type": "url", "url": "https://example.com/sse", "name": "ex"}],
        "top_k": 40,
        "stop_sequences": ["END"],
        "inference_geo": "us",
    }
    r = client.post(URL + "?beta=true", json=body(**extras),
                    headers={"anthropic-beta": "claude-code-20250219,effort-2025-11-24"})
    assert r.status_code == 200, r.text
    assert runner.runs[-1].prompt == "Hello!"


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"thinking": "on"}, "thinking"),
        ({"tools": [{"description": "no name"}]}, "tools.0.name"),
        ({"tool_choice": "auto"}, "tool_choice"),
        ({"output_config": {"effort": 3}}, "output_config.effort"),
        ({"top_k": "many"}, "top_k"),
        ({"mcp_servers": {"name": "x"}}, "mcp_servers"),
        ({"messages": [{"role": "tool", "content": "x"}]}, "messages.0.role"),
    ],
)
def test_wrongly_typed_fields_are_400_naming_the_field(client, fields, named):
    """Declared fields keep Anthropic's types: a wrong one is a 400 naming it."""
    r = client.post(URL, json=body(**fields))
    assert r.status_code == 400, r.text
    assert r.json()["error"]["message"].startswith(f"{named}:")


# -- count_tokens ----------------------------------------------------------------------------


@pytest.mark.parametrize("path", [COUNT_URL, "/anthropic/v1/v1/messages/count_tokens",
                                  COUNT_URL + "?beta=true"])
def test_count_tokens_estimates_characters_over_four(client, runner, path):
    """count_tokens answers `{"input_tokens": N}` with N = ceil(characters / 4) over the
    rendered prompt, the system prompt and the tools' JSON, and runs no CLI."""
    tools = [{"name": "Bash", "input_schema": {"type": "object"}}]
    request = {"model": "claude", "system": "Be terse.", "tools": tools,
               "messages": [{"role": "user", "content": "What is 2+2?"}]}
    r = client.post(path, json=request)
    assert r.status_code == 200, r.text
    tools_json = json.dumps(tools, separators=(",", ":"))
    chars = len("What is 2+2?") + len("Be terse.") + len(tools_json)
    assert r.json() == {"input_tokens": -(-chars // CHARS_PER_TOKEN)}
    assert runner.runs == []


def test_count_tokens_grows_with_the_conversation(client):
    """More conversation, more estimated tokens."""
    def count(messages):
        r = client.post(COUNT_URL, json={"model": "claude", "messages": messages})
        assert r.status_code == 200, r.text
        return r.json()["input_tokens"]

    one = [{"role": "user", "content": "hi"}]
    more = [*one, {"role": "assistant", "content": "hello there"},
            {"role": "user", "content": "tell me a long story " * 10}]
    assert 1 <= count(one) < count(more)


@pytest.mark.parametrize(
    ("request_body", "named"),
    [({"messages": [{"role": "user", "content": "x"}]}, "model"),
     ({"model": "claude"}, "messages"),
     ({"model": "claude", "messages": []}, "messages"),
     ({"model": "claude", "messages": [{"role": "user", "content": [
         {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}}]}]},
      "messages.0.content.0.source.url"),
     ({"model": "claude", "messages": [{"role": "user", "content": [
         {"type": "document", "source": {"type": "base64", "media_type": "text/plain",
                                         "data": "\x80 not base64"}}]}]},
      "messages.0.content.0")],
)
def test_count_tokens_refuses_what_messages_refuses(client, request_body, named):
    """A body /messages would refuse is a 400 in Anthropic's envelope here too."""
    r = client.post(COUNT_URL, json=request_body)
    assert r.status_code == 400, r.text
    assert r.json()["type"] == "error"
    assert r.json()["error"]["message"].startswith(f"{named}:")


# -- properties -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fields_client(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("work")
    config = Config(server=ServerConfig(default_workdir=str(workdir), heartbeat_secs=5))
    services = bootstrap(config, runner=FakeBackendRunner(), store=FakeSessionStore(),
                         clock=FakeClock(), ids=FakeIds())
    with TestClient(create_app(services)) as client:
        yield client


def sdk_stream(data: bytes) -> MessageStream:
    response = httpx2.Response(
        200, headers={"content-type": "text/event-stream"}, content=iter([data]),
        request=httpx2.Request("POST", "http://clinvk.test/v1/messages"),
    )
    with Anthropic(api_key="not-needed", base_url="http://clinvk.test") as sdk:
        raw = Stream(cast_to=RawMessageStreamEvent, response=response, client=sdk)
        return MessageStream(raw, output_format=anthropic.NOT_GIVEN)


@settings(max_examples=200, deadline=None)
@given(case=anthropic_requests(), headers=anthropic_headers)
def test_any_request_of_the_full_field_set_is_answered_or_refused_natively(
    fields_client, case, headers
):
    """A request drawn from every field and block type gets a well-formed answer (a message,
    or a stream the SDK reads) unless it carries an image or a binary document, which is a
    400 in Anthropic's envelope; never a 5xx."""
    payload, refused = case
    r = fields_client.post(URL + "?beta=true", json=payload, headers=headers)
    event(f"status {r.status_code}")
    if refused:
        assert r.status_code == 400, r.text
        assert r.json()["type"] == "error"
        assert r.json()["error"]["type"] == "invalid_request_error"
        return
    assert r.status_code == 200, r.text
    if payload.get("stream"):
        final = sdk_stream(r.content).get_final_message()
    else:
        final = anthropic.types.Message.model_validate(r.json())
    assert final.model == payload["model"] and final.stop_reason == "end_turn"
    assert [b.type for b in final.content] == ["text"]
    assert final.content[0].text == "hello from fake"
    count = {k: v for k, v in payload.items() if k not in ("max_tokens", "stream")}
    counted = fields_client.post(COUNT_URL, json=count, headers=headers)
    assert counted.status_code == 200 and counted.json()["input_tokens"] >= 1
