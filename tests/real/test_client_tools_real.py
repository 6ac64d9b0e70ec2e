"""Client tools (function calling) through the real claude CLI, with the official openai
and anthropic SDKs against a real `clinvk serve`: the model (the double) calls the
client's tool, the SDK gets the call while claude waits in it, the result resumes claude,
whose model quotes it; streamed and not; the timeout and the replay; no CLI left."""

from __future__ import annotations

import json
import signal

import anthropic
import openai
import pytest

from tests.support.model_double import ModelDouble, generation_requests, user_texts
from tests.support.server import ClinvkServer

pytestmark = pytest.mark.real

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather of a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}
ANTHROPIC_WEATHER = {"name": "get_weather", "description": "The weather of a city",
                     "input_schema": WEATHER["function"]["parameters"]}
#: What claude's model sees: the bridge's tool, named by claude's MCP rule.
CLAUDE_NAME = "mcp__client__get_weather"
ASK = "What is the weather in Paris?"


@pytest.fixture(scope="module")
def server(model_double: ModelDouble, tmp_path_factory):
    """A clinvk serve of its own, so the processes it leaves (none) are this module's."""
    srv = ClinvkServer(model_double.url, tmp_path_factory.mktemp("tools-server")).start()
    yield srv
    srv.stop()


@pytest.fixture
def oai(server):
    with openai.OpenAI(base_url=server.url + "/openai/v1", api_key="x", max_retries=0,
                       timeout=90) as client:
        yield client


@pytest.fixture
def claude_sdk(server):
    with anthropic.Anthropic(base_url=server.url + "/anthropic", api_key="x", max_retries=0,
                             timeout=90) as client:
        yield client


def _asks_for(model_double: ModelDouble, name: str = CLAUDE_NAME, city: str = "Paris") -> None:
    # claude and codex both name the bridge tool mcp__client__get_weather (codex as a
    # namespace mcp__client holding get_weather; the double reads either).
    model_double.set(tool_use={"name": name, "input": {"city": city}})


def _last_tool_result_sent(model_double: ModelDouble) -> list[dict]:
    """The tool_result blocks of the last model call (what claude gave its model)."""
    last = generation_requests(model_double.requests())[-1]["body"]["messages"][-1]
    return [b for b in last["content"] if isinstance(b, dict) and b.get("type") == "tool_result"]


def test_openai_round_trip(oai, server, model_double):
    """chat.completions with tools: the answer is the model's call of get_weather
    (finish_reason tool_calls) while claude stays alive in it; the `tool` message resumes
    claude, whose model gets the result and quotes it; no claude is left afterwards."""
    _asks_for(model_double)
    messages = [{"role": "user", "content": ASK}]
    first = oai.chat.completions.create(model="claude", messages=messages, tools=[WEATHER])
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    [call] = choice.message.tool_calls
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    assert server.cli_pids(), "claude should wait inside the tool call"
    offered = generation_requests(model_double.requests())[-1]["body"]["tools"]
    assert [t["name"] for t in offered] == [CLAUDE_NAME]  # only the client's tool

    messages += [choice.message.model_dump(exclude_none=True),
                 {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21 C"}]
    raw = oai.chat.completions.with_raw_response.create(
        model="claude", messages=messages, tools=[WEATHER])
    assert "x-clinvk-tool-replay" not in raw.headers
    second = raw.parse()
    assert second.choices[0].finish_reason == "stop"
    assert second.choices[0].message.content == "sunny, 21 C"
    [result] = _last_tool_result_sent(model_double)
    assert result["content"] == [{"type": "text", "text": "sunny, 21 C"}]
    assert server.wait_no_cli() == []


def test_openai_streamed_round_trip(oai, server, model_double):
    """Streamed: the call comes as delta.tool_calls (id, name, arguments) then
    finish_reason tool_calls; the streamed continuation quotes the result."""
    _asks_for(model_double, city="Rome")
    messages = [{"role": "user", "content": ASK}]
    calls: dict[int, dict] = {}
    finish = None
    for chunk in oai.chat.completions.create(model="claude", messages=messages,
                                             tools=[WEATHER], stream=True):
        for choice in chunk.choices:
            for delta in choice.delta.tool_calls or ():
                entry = calls.setdefault(delta.index, {"id": None, "name": "", "arguments": ""})
                entry["id"] = delta.id or entry["id"]
                entry["name"] += delta.function.name or ""
                entry["arguments"] += delta.function.arguments or ""
            finish = choice.finish_reason or finish
    assert finish == "tool_calls"
    [call] = calls.values()
    assert call["name"] == "get_weather" and json.loads(call["arguments"]) == {"city": "Rome"}

    messages += [{"role": "assistant", "content": None, "tool_calls": [
        {"id": call["id"], "type": "function",
         "function": {"name": call["name"], "arguments": call["arguments"]}}]},
        {"role": "tool", "tool_call_id": call["id"], "content": "rain"}]
    stream = oai.chat.completions.create(model="claude", messages=messages, tools=[WEATHER],
                                         stream=True)
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == "rain"
    assert server.wait_no_cli() == []


def test_anthropic_round_trip(claude_sdk, server, model_double):
    """messages.create with tools: a tool_use block (stop_reason tool_use) while claude
    waits; the tool_result block resumes it and its model quotes the result."""
    _asks_for(model_double, city="Oslo")
    messages = [{"role": "user", "content": ASK}]
    first = claude_sdk.messages.create(model="claude", max_tokens=512, messages=messages,
                                       tools=[ANTHROPIC_WEATHER])
    assert first.stop_reason == "tool_use"
    [use] = [b for b in first.content if b.type == "tool_use"]
    assert (use.name, use.input) == ("get_weather", {"city": "Oslo"})
    messages += [{"role": "assistant", "content": [b.model_dump() for b in first.content]},
                 {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id,
                                               "content": "snow"}]}]
    second = claude_sdk.messages.create(model="claude", max_tokens=512, messages=messages,
                                        tools=[ANTHROPIC_WEATHER])
    assert second.stop_reason == "end_turn"
    assert second.content[0].text == "snow"
    assert server.wait_no_cli() == []


def test_anthropic_streamed_round_trip(claude_sdk, server, model_double):
    """Streamed: content_block_start (tool_use) and input_json_delta, stop_reason tool_use;
    then the streamed continuation; the SDK assembles both."""
    _asks_for(model_double, city="Lima")
    messages = [{"role": "user", "content": ASK}]
    with claude_sdk.messages.stream(model="claude", max_tokens=512, messages=messages,
                                    tools=[ANTHROPIC_WEATHER]) as stream:
        first = stream.get_final_message()
    assert first.stop_reason == "tool_use"
    [use] = [b for b in first.content if b.type == "tool_use"]
    assert (use.name, use.input) == ("get_weather", {"city": "Lima"})
    messages += [{"role": "assistant", "content": [b.model_dump() for b in first.content
                                                   if b.type == "tool_use"]},
                 {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id,
                                               "content": "fog"}]}]
    with claude_sdk.messages.stream(model="claude", max_tokens=512, messages=messages,
                                    tools=[ANTHROPIC_WEATHER]) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "fog" and final.stop_reason == "end_turn"
    assert server.wait_no_cli() == []


def test_a_result_after_the_timeout_is_replayed_in_a_fresh_run(model_double, tmp_path):
    """A parked run nobody answers within tool_result_timeout_secs ends (its claude is
    gone); the late result then gets a fresh run whose prompt carries the whole
    conversation, call and result included, and the answer says so in its header."""
    srv = ClinvkServer(model_double.url, tmp_path, tool_result_timeout_secs=1).start()
    try:
        with openai.OpenAI(base_url=srv.url + "/openai/v1", api_key="x", max_retries=0,
                           timeout=90) as client:
            _asks_for(model_double, city="Kyiv")
            messages = [{"role": "user", "content": ASK}]
            first = client.chat.completions.create(model="claude", messages=messages,
                                                   tools=[WEATHER])
            [call] = first.choices[0].message.tool_calls
            assert srv.wait_no_cli() == [], "the parked claude should end after the timeout"
            model_double.set(tool_use=None, reply="replayed answer")
            messages += [first.choices[0].message.model_dump(exclude_none=True),
                         {"role": "tool", "tool_call_id": call.id, "content": "hail"}]
            raw = client.chat.completions.with_raw_response.create(
                model="claude", messages=messages, tools=[WEATHER])
            assert raw.headers["x-clinvk-tool-replay"] == "1"
            assert raw.parse().choices[0].message.content == "replayed answer"
            prompt = user_texts(generation_requests(model_double.requests())[-1])[-1]
            assert ASK in prompt and "get_weather" in prompt and call.id in prompt
            assert "hail" in prompt
            assert srv.wait_no_cli() == []
    finally:
        srv.stop()


def test_bad_tools_are_400s_naming_the_field(oai, claude_sdk, server):
    """Duplicate names and a result for a call the conversation never made are refused
    in each dialect's envelope, naming the field; no CLI runs."""
    with pytest.raises(openai.BadRequestError) as err:
        oai.chat.completions.create(model="claude", messages=[{"role": "user", "content": "x"}],
                                    tools=[WEATHER, WEATHER])
    assert err.value.param == "tools[1].function.name"
    with pytest.raises(openai.BadRequestError) as err:
        oai.chat.completions.create(model="claude", tools=[WEATHER], messages=[
            {"role": "user", "content": "x"},
            {"role": "tool", "tool_call_id": "call_never_made", "content": "r"}])
    assert err.value.param == "messages[1].tool_call_id"
    bad_schema = {**ANTHROPIC_WEATHER, "input_schema": {"type": "object", "properties": 3}}
    with pytest.raises(anthropic.BadRequestError) as err:
        claude_sdk.messages.create(model="claude", max_tokens=10, tools=[bad_schema],
                                   messages=[{"role": "user", "content": "x"}])
    assert "tools.0.input_schema" in err.value.message
    assert server.cli_pids() == []


TIME = {"type": "function", "function": {
    "name": "get_time", "description": "The time in a zone",
    "parameters": {"type": "object", "properties": {"zone": {"type": "string"}}}}}


def test_two_calls_made_at_once_come_in_one_answer(oai, server, model_double):
    """The model calls two tools in one message: claude makes both MCP calls at once (the
    bridge marks the tools read-only), both come in one answer, and one request with both
    results resumes claude, whose model gets both."""
    model_double.set(tool_use=[
        {"name": CLAUDE_NAME, "input": {"city": "Paris"}},
        {"name": "mcp__client__get_time", "input": {"zone": "CET"}}])
    messages = [{"role": "user", "content": "weather and time?"}]
    first = oai.chat.completions.create(model="claude", messages=messages,
                                        tools=[WEATHER, TIME])
    assert first.choices[0].finish_reason == "tool_calls"
    calls = first.choices[0].message.tool_calls
    assert sorted((c.function.name, c.function.arguments) for c in calls) == [
        ("get_time", '{"zone":"CET"}'), ("get_weather", '{"city":"Paris"}')]
    answers = {"get_weather": "sunny", "get_time": "noon"}
    messages += [first.choices[0].message.model_dump(exclude_none=True), *[
        {"role": "tool", "tool_call_id": c.id, "content": answers[c.function.name]}
        for c in calls]]
    second = oai.chat.completions.create(model="claude", messages=messages,
                                         tools=[WEATHER, TIME])
    assert second.choices[0].finish_reason == "stop"
    sent = {b["content"][0]["text"] for b in _last_tool_result_sent(model_double)}
    assert sent == {"sunny", "noon"}
    assert sorted(second.choices[0].message.content) == sorted("sunnynoon")
    assert server.wait_no_cli() == []


#: codex offers an MCP server's tools as a Responses namespace; its default model runs in
#: code mode (tools only inside its `exec` JavaScript tool), so these runs name a model
#: whose tools are offered directly.
CODEX_MODEL = "codex/gpt-5"


def test_codex_openai_round_trip(oai, server, model_double):
    """codex: its model calls get_weather of the bridge's namespace; the SDK gets the
    call while codex waits in it; the result resumes codex, whose model gets it; codex's
    own shell and web tools are not offered."""
    _asks_for(model_double, city="Paris")
    messages = [{"role": "user", "content": ASK}]
    first = oai.chat.completions.create(model=CODEX_MODEL, messages=messages, tools=[WEATHER])
    assert first.choices[0].finish_reason == "tool_calls"
    [call] = first.choices[0].message.tool_calls
    assert (call.function.name, json.loads(call.function.arguments)) == (
        "get_weather", {"city": "Paris"})
    offered = generation_requests(model_double.requests())[-1]["body"]["tools"]
    names = {t.get("name") for t in offered}
    assert "mcp__client" in names
    assert not names & {"exec_command", "shell", "apply_patch", "web_search", "view_image"}
    messages += [first.choices[0].message.model_dump(exclude_none=True),
                 {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21 C"}]
    second = oai.chat.completions.create(model=CODEX_MODEL, messages=messages, tools=[WEATHER])
    assert second.choices[0].finish_reason == "stop"
    assert "sunny, 21 C" in second.choices[0].message.content
    assert server.wait_no_cli() == []


def test_codex_anthropic_streamed_round_trip(claude_sdk, server, model_double):
    """codex behind the Anthropic dialect, streamed: tool_use then the continuation."""
    _asks_for(model_double, city="Oslo")
    messages = [{"role": "user", "content": ASK}]
    with claude_sdk.messages.stream(model=CODEX_MODEL, max_tokens=512, messages=messages,
                                    tools=[ANTHROPIC_WEATHER]) as stream:
        first = stream.get_final_message()
    assert first.stop_reason == "tool_use"
    [use] = [b for b in first.content if b.type == "tool_use"]
    assert (use.name, use.input) == ("get_weather", {"city": "Oslo"})
    messages += [{"role": "assistant", "content": [b.model_dump() for b in first.content
                                                   if b.type == "tool_use"]},
                 {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id,
                                               "content": "snow"}]}]
    with claude_sdk.messages.stream(model=CODEX_MODEL, max_tokens=512, messages=messages,
                                    tools=[ANTHROPIC_WEATHER]) as stream:
        text = "".join(stream.text_stream)
    assert "snow" in text
    assert server.wait_no_cli() == []


#: What gemini's model sees: gemini names an MCP tool `mcp_<server>_<tool>`.
GEMINI_NAME = "mcp_client_get_weather"


def test_gemini_openai_streamed_round_trip(oai, server, model_double):
    """gemini (the bridge in its settings layer, trusted): its model calls the tool, the
    streamed answer carries the call, the result resumes gemini; only the bridge's tool
    is offered to its model (tools.core)."""
    _asks_for(model_double, name=GEMINI_NAME, city="Rome")
    messages = [{"role": "user", "content": ASK}]
    calls: dict[int, dict] = {}
    for chunk in oai.chat.completions.create(model="gemini", messages=messages,
                                             tools=[WEATHER], stream=True):
        for choice in chunk.choices:
            for delta in choice.delta.tool_calls or ():
                entry = calls.setdefault(delta.index, {"id": None, "name": "", "arguments": ""})
                entry["id"] = delta.id or entry["id"]
                entry["name"] += delta.function.name or ""
                entry["arguments"] += delta.function.arguments or ""
    [call] = calls.values()
    assert call["name"] == "get_weather" and json.loads(call["arguments"]) == {"city": "Rome"}
    offered = generation_requests(model_double.requests())[-1]["body"]["tools"]
    assert [f["name"] for t in offered for f in t["functionDeclarations"]] == [GEMINI_NAME]
    messages += [{"role": "assistant", "content": None, "tool_calls": [
        {"id": call["id"], "type": "function",
         "function": {"name": call["name"], "arguments": call["arguments"]}}]},
        {"role": "tool", "tool_call_id": call["id"], "content": "rain"}]
    second = oai.chat.completions.create(model="gemini", messages=messages, tools=[WEATHER])
    assert second.choices[0].finish_reason == "stop"
    assert "rain" in second.choices[0].message.content
    assert server.wait_no_cli() == []


def test_gemini_anthropic_round_trip(claude_sdk, server, model_double):
    """gemini behind the Anthropic dialect: tool_use, then the continuation."""
    _asks_for(model_double, name=GEMINI_NAME, city="Oslo")
    messages = [{"role": "user", "content": ASK}]
    first = claude_sdk.messages.create(model="gemini", max_tokens=512, messages=messages,
                                       tools=[ANTHROPIC_WEATHER])
    assert first.stop_reason == "tool_use"
    [use] = [b for b in first.content if b.type == "tool_use"]
    assert (use.name, use.input) == ("get_weather", {"city": "Oslo"})
    messages += [{"role": "assistant", "content": [b.model_dump() for b in first.content]},
                 {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id,
                                               "content": "snow"}]}]
    second = claude_sdk.messages.create(model="gemini", max_tokens=512, messages=messages,
                                        tools=[ANTHROPIC_WEATHER])
    assert second.stop_reason == "end_turn" and "snow" in second.content[0].text
    assert server.wait_no_cli() == []


def test_a_server_stopping_ends_its_parked_runs(model_double, tmp_path):
    """SIGTERM with a run parked at a tool call: the server exits by itself and the
    waiting claude is gone with it."""
    srv = ClinvkServer(model_double.url, tmp_path).start()
    try:
        _asks_for(model_double)
        with openai.OpenAI(base_url=srv.url + "/openai/v1", api_key="x", max_retries=0,
                           timeout=90) as client:
            first = client.chat.completions.create(
                model="claude", messages=[{"role": "user", "content": ASK}], tools=[WEATHER])
        offered = generation_requests(model_double.requests())[-1]["body"].get("tools")
        assert first.choices[0].finish_reason == "tool_calls", offered
        assert srv.cli_pids(), "claude should wait inside the tool call"
    finally:
        code = srv.stop()
    assert code is not None and code != -signal.SIGKILL  # it stopped by itself
    assert srv.wait_no_cli() == []


def _answer_calls(messages: list, completion) -> list:
    answers = {"get_weather": "sunny", "get_time": "noon"}
    message = completion.choices[0].message
    return [*messages, message.model_dump(exclude_none=True), *[
        {"role": "tool", "tool_call_id": c.id, "content": answers[c.function.name]}
        for c in message.tool_calls]]


def test_gemini_makes_two_calls_at_once(oai, server, model_double):
    """gemini runs the two calls its model made in one message at once: both come in one
    answer, and one request with both results resumes it."""
    model_double.set(tool_use=[{"name": "mcp_client_get_weather", "input": {"city": "P"}},
                               {"name": "mcp_client_get_time", "input": {"zone": "CET"}}])
    messages = [{"role": "user", "content": "weather and time?"}]
    first = oai.chat.completions.create(model="gemini", messages=messages,
                                        tools=[WEATHER, TIME])
    assert sorted(c.function.name for c in first.choices[0].message.tool_calls) == [
        "get_time", "get_weather"]
    second = oai.chat.completions.create(model="gemini", tools=[WEATHER, TIME],
                                         messages=_answer_calls(messages, first))
    assert second.choices[0].finish_reason == "stop"
    assert "sunny" in second.choices[0].message.content
    assert "noon" in second.choices[0].message.content
    assert server.wait_no_cli() == []


def test_codex_two_calls_come_in_one_or_two_answers(oai, server, model_double):
    """codex starts the two calls its model made in one message close together but not
    always before the first reaches the bridge: an agent loop gets both, in one answer or
    in two, and then codex's answer with both results."""
    model_double.set(tool_use=[{"name": "mcp__client__get_weather", "input": {"city": "P"}},
                               {"name": "mcp__client__get_time", "input": {"zone": "CET"}}])
    messages: list = [{"role": "user", "content": "weather and time?"}]
    called: list[str] = []
    for _ in range(3):  # at most one answer per call, then the text
        answer = oai.chat.completions.create(model=CODEX_MODEL, messages=messages,
                                             tools=[WEATHER, TIME])
        if answer.choices[0].finish_reason != "tool_calls":
            break
        called += [c.function.name for c in answer.choices[0].message.tool_calls]
        messages = _answer_calls(messages, answer)
    assert sorted(called) == ["get_time", "get_weather"]
    assert answer.choices[0].finish_reason == "stop"
    assert "sunny" in answer.choices[0].message.content
    assert server.wait_no_cli() == []
