"""The requests codex 0.169.0 really sends to a Responses-API provider
(tests/fixtures/clients/codex, captured from the model double) replayed against
`/openai/v1/responses` on a real uvicorn server running the app on fakes: each is streamed
back in events the `openai` SDK parses, and the CLI gets the user's words, the earlier
turns and codex's instructions as the system prompt; codex's function tools are offered
through the bridge (docs/openai.md, "codex as a client")."""

from __future__ import annotations

import json
from pathlib import Path

import openai
import pytest
from openai import OpenAI

from clinvk.adapters.http.app import create_app
from clinvk.adapters.http.openai.translate import PART_SEPARATOR, SYSTEM_SEPARATOR
from tests.support.live import LiveServer

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "clients" / "codex"
CAPTURED = sorted(FIXTURES.glob("*turn-*.json"))
#: The stream codex reads: it needs created, the item added/done, the deltas and completed
#: (with usage); clinvk sends the whole sequence the real API sends.
EVENTS = [
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.content_part.added",
    *["response.output_text.delta"] * 3,  # the fake streams "hello from fake" word by word
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
    "response.completed",
]
#: Headers of the captured call that describe the connection or carry the key.
_DROPPED = {"authorization", "accept", "content-type"}


def load(path: Path) -> dict:
    return json.loads(path.read_text())


@pytest.fixture
def sdk(services):
    with LiveServer(create_app(services)) as server, OpenAI(
        base_url=f"{server.url}/openai/v1", api_key="not-needed", max_retries=0
    ) as client:
        yield client


def replay(sdk: OpenAI, captured: dict) -> list:
    """POST the captured body with codex's headers through the SDK; its stream events."""
    body = dict(captured["body"])
    headers = {k: v for k, v in captured["headers"].items() if k.lower() not in _DROPPED}
    rest = {k: v for k, v in body.items() if k not in ("model", "input", "stream")}
    assert body["stream"] is True
    stream = sdk.responses.create(model=body["model"], input=body["input"], stream=True,
                                  extra_body=rest, extra_headers=headers)
    return list(stream)


def test_the_fixtures_are_what_codex_sends():
    """The fixtures hold a first turn and a `codex exec resume` turn, for a model codex does
    not know (its tools in `tools`) and for its own default model (its tools in an
    `additional_tools` input item), with the fields codex always sends."""
    assert [p.name for p in CAPTURED] == ["known-model-turn-1.json", "known-model-turn-2.json",
                                          "turn-1.json", "turn-2.json"]
    for path in CAPTURED:
        captured = load(path)
        body = captured["body"]
        assert (captured["method"], captured["path"]) == ("POST", "/v1/responses")
        assert captured["headers"]["accept"] == "text/event-stream"
        assert body["stream"] is True and body["store"] is False
        assert body["include"] == ["reasoning.encrypted_content"]
        assert body["tool_choice"] == "auto" and "prompt_cache_key" in body
        assert "previous_response_id" not in body  # codex resends the whole conversation
        assert "x-codex-turn-metadata" in body["client_metadata"]
    first, second = load(FIXTURES / "turn-1.json")["body"], load(FIXTURES / "turn-2.json")["body"]
    assert first["model"] == "claude" and first["reasoning"] == {"summary": "auto"}
    assert {t["type"] for t in first["tools"]} == {"function", "namespace", "web_search"}
    assert [(i["type"], i["role"]) for i in second["input"]] == [
        ("message", "developer"), ("message", "developer"), ("message", "user"),
        ("message", "user"), ("message", "assistant"), ("message", "user")]
    known = load(FIXTURES / "known-model-turn-1.json")["body"]
    assert known["model"] == "gpt-6.1-sol" and "tools" not in known
    assert known["input"][0]["type"] == "additional_tools"
    assert known["text"] == {"verbosity": "low"} and "effort" in known["reasoning"]


@pytest.mark.parametrize("path", CAPTURED, ids=lambda p: p.stem)
def test_each_captured_request_streams_the_events_codex_reads(sdk, runner, path):
    """A captured request streams the full event sequence, which the SDK parses into the
    fake CLI's answer with usage; the response echoes the function tools offered to the
    backend's model (none for codex's own model, whose tools come as an input item) and
    is not stored."""
    events = replay(sdk, load(path))
    assert [e.type for e in events] == EVENTS
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == \
        "hello from fake"
    final = events[-1].response
    assert final.status == "completed" and final.output_text == "hello from fake"
    assert final.usage is not None and final.usage.total_tokens == 6
    functions = [t["name"] for t in load(path)["body"].get("tools", [])
                 if t["type"] == "function"]
    assert [t.name for t in final.tools] == functions and final.store is False
    assert len(runner.runs) == 1 and runner.runs[0].ephemeral is True
    offered = runner.runs[0].tools
    assert (list(offered.names) if offered else []) == functions


def test_codexs_function_tools_reach_the_backends_model_through_the_bridge(sdk, runner):
    """codex's `function` tools (exec_command, ...) are offered through the bridge, so the
    backend's model calls them where codex runs; its namespace and web_search tools are
    not (only function tools are client tools), and the backend's own tools are off."""
    captured = load(FIXTURES / "turn-1.json")
    replay(sdk, captured)
    spec = runner.runs[-1]
    assert spec.tools is not None and spec.tools.builtin_tools is False
    assert spec.tools.names == ("exec_command", "write_stdin", "request_user_input",
                                "view_image", "get_goal", "create_goal", "update_goal")


def test_a_first_turn_reaches_the_cli_with_codexs_instructions(sdk, runner):
    """codex's developer messages become the system prompt; its environment context comes
    before the user's words, which end the prompt."""
    captured = load(FIXTURES / "turn-1.json")
    replay(sdk, captured)
    spec = runner.runs[-1]
    developer = [PART_SEPARATOR.join(p["text"] for p in i["content"])
                 for i in captured["body"]["input"] if i["role"] == "developer"]
    assert len(developer) == 2
    assert spec.system_prompt == SYSTEM_SEPARATOR.join(developer)
    assert "<environment_context>" in spec.prompt
    assert spec.prompt.endswith("Reply to this latest user message:\nhello")
    assert spec.backend == "claude" and spec.resume_id is None


def test_a_resumed_turn_carries_the_earlier_turns(sdk, runner):
    """`codex exec resume` resends the conversation: the earlier question and answer are in
    the prompt before the new words."""
    replay(sdk, load(FIXTURES / "turn-2.json"))
    prompt = runner.runs[-1].prompt
    history, _, latest = prompt.partition("Reply to this latest user message:\n")
    assert latest == "and again"
    assert '"content":"hello"' in history and '"content":"w0 w1 w2 w3 w4"' in history


def test_codexs_own_model_routes_to_the_codex_backend_without_its_tool_list(sdk, runner):
    """With codex's default model the request goes to the codex backend with that model,
    and the `additional_tools` item (codex's tool list) stays out of the prompt."""
    captured = load(FIXTURES / "known-model-turn-2.json")
    replay(sdk, captured)
    spec = runner.runs[-1]
    assert (spec.backend, spec.model) == ("codex", "gpt-6.1-sol")
    tools = json.dumps(captured["body"]["input"][0]["tools"])
    described = "Run JavaScript code to orchestrate"  # the `exec` tool's description
    assert described in tools
    assert described not in spec.prompt and described not in (spec.system_prompt or "")
    assert spec.prompt.endswith("Reply to this latest user message:\nand again")


def test_codexs_reasoning_effort_is_the_runs_effort(sdk, runner):
    """`reasoning.effort`, which codex sends for its own models, becomes the run's effort;
    a request with only a reasoning summary setting leaves the CLI's default."""
    known = load(FIXTURES / "known-model-turn-1.json")
    replay(sdk, known)
    assert runner.runs[-1].effort == known["body"]["reasoning"]["effort"] == "low"
    replay(sdk, load(FIXTURES / "turn-1.json"))
    assert runner.runs[-1].effort is None


def test_tool_items_of_a_later_turn_are_written_into_the_prompt(sdk, runner):
    """The items codex sends back after its own tool runs (function, custom and local-shell
    calls with their outputs) are written as tool lines; reasoning and compaction items,
    which only the API that made them can read, are left out."""
    items = [
        {"type": "message", "role": "user", "content": [{"type": "input_text",
                                                         "text": "fix it"}]},
        {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "gAAA"},
        {"type": "function_call", "call_id": "c1", "name": "exec_command",
         "arguments": '{"cmd":"ls"}'},
        {"type": "function_call_output", "call_id": "c1", "output": "a.py"},
        {"type": "custom_tool_call", "call_id": "c2", "name": "apply_patch",
         "input": "*** Begin Patch"},
        {"type": "custom_tool_call_output", "call_id": "c2", "output": "Done"},
        {"type": "local_shell_call", "call_id": "c3", "status": "completed",
         "action": {"type": "exec", "command": ["pwd"]}},
        {"type": "function_call_output", "call_id": "c3", "output": "/w"},
        {"type": "compaction", "encrypted_content": "gAAA"},
        {"type": "web_search_call", "id": "ws_1", "status": "completed",
         "action": {"type": "search", "query": "x"}},
        {"type": "message", "role": "user", "content": "and now?"},
    ]
    sdk.responses.create(model="claude", input=items, store=False,
                         include=["reasoning.encrypted_content"])
    prompt = runner.runs[-1].prompt
    for text in ('Tool call exec_command (id c1) with input: {\\"cmd\\":\\"ls\\"}',
                 "Tool result for c1: a.py",
                 "Tool call apply_patch (id c2) with input: *** Begin Patch",
                 "Tool result for c2: Done",
                 'Tool call local_shell (id c3) with input: {\\"type\\":\\"exec\\"',
                 "Tool result for c3: /w"):
        assert text in prompt
    assert "gAAA" not in prompt and "rs_1" not in prompt and "ws_1" not in prompt
    assert prompt.endswith("Reply to this latest user message:\nand now?")


def test_an_item_clinvk_cannot_resolve_is_still_a_400(sdk, runner):
    """An `item_reference` to an item clinvk did not store (one stored by OpenAI) is a 400
    naming it; nothing runs."""
    with pytest.raises(openai.BadRequestError) as info:
        sdk.responses.create(model="claude", input=[
            {"type": "item_reference", "id": "msg_1"},
            {"role": "user", "content": "hi"}])
    assert info.value.body["param"] == "input[0].id" and "'msg_1'" in info.value.message
    assert runner.runs == []
