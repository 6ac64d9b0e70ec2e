"""The Responses API (`/openai/v1/responses`) with the official `openai` SDK against a real
uvicorn server running the app on fakes, plus property tests of its input handling."""

from __future__ import annotations

import json

import msgspec
import openai
import pytest
from hypothesis import HealthCheck, given, settings
from openai import OpenAI
from starlette.testclient import TestClient

from clinvk.adapters.http.app import create_app
from clinvk.adapters.http.openai.responses_translate import METADATA_KEY
from tests.responses_strategies import bad_bodies, requests
from tests.support.live import LiveServer

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


@pytest.fixture
def server_url(services):
    """Base URL of a uvicorn server running the whole app in a background thread."""
    with LiveServer(create_app(services)) as server:
        yield server.url


@pytest.fixture
def sdk(server_url):
    with OpenAI(base_url=f"{server_url}/openai/v1", api_key="k", max_retries=0) as c:
        yield c


def test_create_parses_into_the_sdk_response(sdk, runner):
    """responses.create answers a typed Response whose output_text is the CLI's answer."""
    response = sdk.responses.create(model="claude", input="Hello!", instructions="Be brief.")
    assert response.id.startswith("resp_")
    assert response.object == "response"
    assert response.status == "completed"
    assert response.model == "claude"
    assert response.output_text == "hello from fake"
    message = response.output[0]
    assert message.type == "message" and message.role == "assistant"
    assert message.id.startswith("msg_")
    assert response.usage is not None
    assert (response.usage.input_tokens, response.usage.output_tokens) == (3, 3)
    assert response.usage.total_tokens == 6
    assert response.usage.input_tokens_details.cached_tokens == 0
    assert response.usage.output_tokens_details.reasoning_tokens == 0
    assert response.store is True and response.previous_response_id is None
    assert runner.runs[-1].prompt == "Hello!"
    assert runner.runs[-1].system_prompt == "Be brief."
    assert runner.runs[-1].backend == "claude"


def test_model_names_route_like_chat(sdk, runner):
    """The model name chooses the backend as on chat completions."""
    sdk.responses.create(model="gpt-5", input="hi")
    assert (runner.runs[-1].backend, runner.runs[-1].model) == ("codex", "gpt-5")


def test_input_items_are_rendered_with_system_messages_apart(sdk, runner):
    """Message items of every form become one prompt; system/developer ones the system prompt."""
    sdk.responses.create(
        model="claude",
        instructions="first",
        input=[
            {"role": "developer", "content": "second"},
            {"role": "user", "content": [{"type": "input_text", "text": "what is 2+2?"}]},
            {"type": "message", "role": "assistant",
             "content": [{"type": "output_text", "text": "let me check"}]},
            {"type": "function_call", "call_id": "c1", "name": "calc", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": "4"},
            {"role": "user", "content": "so?"},
        ],
    )
    spec = runner.runs[-1]
    assert spec.system_prompt == "first\n\nsecond"
    assert spec.prompt.endswith("Reply to this latest user message:\nso?")
    for text in ("what is 2+2?", "let me check", "Tool call calc (id c1)",
                 "Tool result for c1: 4"):
        assert text in spec.prompt


def test_stream_events_in_order(sdk):
    """create(stream=True) yields the real event sequence, numbered, with the text deltas."""
    events = list(sdk.responses.create(model="claude", input="hi", stream=True))
    assert [e.type for e in events] == EVENTS
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert "".join(deltas) == "hello from fake"
    assert events[0].response.status == "in_progress"
    final = events[-1].response
    assert final.status == "completed" and final.output_text == "hello from fake"
    assert final.id == events[0].response.id
    assert final.usage is not None and final.usage.output_tokens == 3


def test_stream_helper_final_response(sdk):
    """responses.stream(...) reads the stream and get_final_response() is the whole answer."""
    with sdk.responses.stream(model="claude", input="hi") as stream:
        texts = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(texts) == "hello from fake"
    assert final.output_text == "hello from fake"


def test_previous_response_id_resumes_the_cli_session(sdk, runner):
    """A follow-up with previous_response_id resumes the CLI's session with only the new input."""
    first = sdk.responses.create(model="claude", input="remember 7")
    second = sdk.responses.create(model="claude", input="what number?",
                                  previous_response_id=first.id)
    assert runner.runs[-1].resume_id == "claude-thread-1"
    assert runner.runs[-1].prompt == "what number?"
    assert second.previous_response_id == first.id
    third = sdk.responses.create(model="claude", input="and again?",
                                 previous_response_id=second.id, stream=False)
    assert runner.runs[-1].resume_id == "claude-thread-1"
    assert third.output_text == "hello from fake"


def test_streamed_response_can_be_continued(sdk, runner):
    """The id of a streamed response is a previous_response_id too."""
    with sdk.responses.stream(model="claude", input="one") as stream:
        first = stream.get_final_response()
    sdk.responses.create(model="claude", input="two", previous_response_id=first.id)
    assert runner.runs[-1].resume_id == "claude-thread-1"
    assert runner.runs[-1].prompt == "two"


def test_an_earlier_response_branches_into_a_replayed_conversation(sdk, runner, store):
    """Continuing from a response that is not its conversation's latest starts a new
    session whose prompt replays the conversation up to that response (not the later
    turns); the branch then continues like any conversation."""
    first = sdk.responses.create(model="claude", input=[
        {"role": "developer", "content": "be terse"}, {"role": "user", "content": "one"}])
    sdk.responses.create(model="claude", input="two", previous_response_id=first.id)
    branch = sdk.responses.create(model="claude", input="three",
                                  previous_response_id=first.id)
    spec = runner.runs[-1]
    assert spec.resume_id is None and spec.session_id != runner.runs[0].session_id
    history, _, latest = spec.prompt.partition("Reply to this latest user message:\n")
    assert latest == "three"
    assert json.loads(history.split("\n")[1]) == [
        {"role": "developer", "content": "be terse"}, {"role": "user", "content": "one"},
        {"role": "assistant", "content": "hello from fake"}]
    assert branch.previous_response_id == first.id
    assert len(store.sessions) == 2
    sdk.responses.create(model="claude", input="four", previous_response_id=branch.id)
    assert runner.runs[-1].resume_id == "claude-thread-3"
    assert runner.runs[-1].prompt == "four"
    # A branch of the branch replays the replayed turns too.
    sdk.responses.create(model="claude", input="five", previous_response_id=branch.id)
    replayed = json.loads(runner.runs[-1].prompt.split("\n")[1])
    assert [t["content"] for t in replayed] == [
        "be terse", "one", "hello from fake", "three", "hello from fake"]


def test_a_streamed_turn_is_kept_for_branching_too(sdk, runner):
    """A streamed response's turn is in the history a later branch replays."""
    with sdk.responses.stream(model="claude", input="one") as stream:
        first = stream.get_final_response()
    sdk.responses.create(model="claude", input="two", previous_response_id=first.id)
    sdk.responses.create(model="claude", input="three", previous_response_id=first.id)
    replayed = json.loads(runner.runs[-1].prompt.split("\n")[1])
    assert [t["content"] for t in replayed] == ["one", "hello from fake"]


def test_an_earlier_response_without_kept_turns_is_a_400(sdk, runner, store):
    """A conversation whose turns clinvk did not keep (a session recorded before it kept
    them) cannot branch: a 400 naming previous_response_id, and nothing runs."""
    first = sdk.responses.create(model="claude", input="one")
    sdk.responses.create(model="claude", input="two", previous_response_id=first.id)
    (session,) = store.sessions.values()
    record = {k: v for k, v in session.metadata[METADATA_KEY].items() if k != "history"}
    store.sessions[session.id] = msgspec.structs.replace(
        session, metadata={**session.metadata, METADATA_KEY: record})
    runs = len(runner.runs)
    with pytest.raises(openai.BadRequestError) as info:
        sdk.responses.create(model="claude", input="three", previous_response_id=first.id)
    assert info.value.body["param"] == "previous_response_id"
    assert len(runner.runs) == runs


def test_a_session_begun_elsewhere_keeps_no_partial_history(sdk, runner):
    """Responses continuing a session begun through chat completions (clinvk.session_id)
    keep no history, since its earlier turns are not known: branching from one is a 400."""
    chat = sdk.chat.completions.with_raw_response.create(
        model="claude", messages=[{"role": "user", "content": "zero"}])
    session_id = chat.headers["x-clinvk-session-id"]
    first = sdk.responses.create(model="claude", input="one",
                                 extra_body={"clinvk": {"session_id": session_id}})
    sdk.responses.create(model="claude", input="two", previous_response_id=first.id)
    with pytest.raises(openai.BadRequestError) as info:
        sdk.responses.create(model="claude", input="three", previous_response_id=first.id)
    assert info.value.body["param"] == "previous_response_id"


def test_unknown_previous_response_id_is_a_400(sdk, runner):
    """An unknown previous_response_id is an OpenAI-style 400 naming it; nothing runs."""
    for bad in ("resp_nope", "resp_" + "0" * 32 + "czk5OQ", "x"):
        with pytest.raises(openai.BadRequestError) as info:
            sdk.responses.create(model="claude", input="hi", previous_response_id=bad)
        assert info.value.body["param"] == "previous_response_id"
        assert info.value.body["type"] == "invalid_request_error"
    assert runner.runs == []


def test_get_and_delete_a_stored_response(sdk):
    """A stored response can be retrieved, then deleted; afterwards it is gone."""
    created = sdk.responses.create(model="claude", input="hi", metadata={"k": "v"})
    got = sdk.responses.retrieve(created.id)
    assert got.id == created.id and got.output_text == "hello from fake"
    assert got.metadata == {"k": "v"}
    deleted = sdk.with_raw_response.responses.delete(created.id)
    assert deleted.http_response.json() == {"id": created.id, "object": "response",
                                            "deleted": True}
    with pytest.raises(openai.NotFoundError):
        sdk.responses.retrieve(created.id)
    with pytest.raises(openai.NotFoundError):
        sdk.responses.delete(created.id)
    with pytest.raises(openai.BadRequestError):
        sdk.responses.create(model="claude", input="more", previous_response_id=created.id)


def test_unknown_response_ids_are_404(sdk):
    """GET and DELETE of an id clinvk never made answer 404 in OpenAI's envelope."""
    for bad in ("resp_x", "nothing", "resp_" + "0" * 32 + "czk5OQ"):
        with pytest.raises(openai.NotFoundError) as info:
            sdk.responses.retrieve(bad)
        assert info.value.body["type"] == "invalid_request_error"


def test_store_false_keeps_nothing(sdk, store, runner):
    """store: false runs without a session and the response cannot be retrieved."""
    response = sdk.responses.create(model="claude", input="hi", store=False)
    assert response.store is False and response.output_text == "hello from fake"
    assert runner.runs[-1].ephemeral is True
    assert store.sessions == {}
    with pytest.raises(openai.NotFoundError):
        sdk.responses.retrieve(response.id)


def test_image_input_that_is_no_image_is_a_clear_400(sdk, runner):
    """An input_image whose data is not an image is refused with a 400 naming the part;
    nothing runs (real images are carried: tests/http/test_images.py)."""
    with pytest.raises(openai.BadRequestError) as info:
        sdk.responses.create(model="claude", input=[{"role": "user", "content": [
            {"type": "input_text", "text": "what is this?"},
            {"type": "input_image", "image_url": "data:image/png;base64,AA=="},
        ]}])
    assert info.value.body["param"] == "input[0].content[1]"
    assert "image" in info.value.body["message"]
    assert runner.runs == []


def test_failure_after_start_is_a_failed_event(sdk, runner):
    """A run that fails after streaming text ends the stream with response.failed."""
    runner.fail = "the CLI crashed"
    events = list(sdk.responses.create(model="claude", input="hi", stream=True))
    assert events[-1].type == "response.failed"
    assert events[-1].response.status == "failed"
    assert events[-1].response.error is not None
    assert "the CLI crashed" in events[-1].response.error.message


def test_failure_before_start_is_an_http_error(sdk, runner):
    """A run refused up front (a missing CLI) is an ordinary error response, not a stream."""
    runner.unavailable.add("claude")
    with pytest.raises(openai.APIStatusError) as info:
        sdk.responses.create(model="claude", input="hi", stream=True)
    assert info.value.status_code == 503


def test_clinvk_options_are_honoured(sdk, runner, tmp_path):
    """The clinvk options object works as on chat completions."""
    sdk.responses.create(model="claude", input="hi", max_output_tokens=50,
                         extra_body={"clinvk": {"workdir": str(tmp_path), "max_turns": 2}})
    spec = runner.runs[-1]
    assert (spec.max_tokens, spec.max_turns) == (50, 2)
    assert spec.workdir == str(tmp_path.resolve())


def test_reasoning_effort_and_text_format_reach_the_run(sdk, runner):
    """`reasoning.effort` is the run's effort (`clinvk.effort` wins over it); a
    `json_schema` text format is the run's output schema, and `json_object` asks for JSON in
    the system prompt."""
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}}
    sdk.responses.create(model="claude", input="hi", reasoning={"effort": "high"},
                         text={"format": {"type": "json_schema", "name": "n",
                                          "schema": schema, "strict": True}})
    assert (runner.runs[-1].effort, runner.runs[-1].output_schema) == ("high", schema)
    sdk.responses.create(model="claude", input="hi", reasoning={"effort": "none"},
                         text={"format": {"type": "json_object"}, "verbosity": "low"})
    assert runner.runs[-1].effort == "minimal" and runner.runs[-1].output_schema is None
    assert "JSON" in (runner.runs[-1].system_prompt or "")
    sdk.responses.create(model="claude", input="hi", reasoning={"effort": "low"},
                         extra_body={"clinvk": {"effort": "max"}})
    assert runner.runs[-1].effort == "max"


@pytest.mark.parametrize(("field", "body"), [
    ("reasoning.effort", {"reasoning": {"effort": "extreme"}}),
    ("reasoning.effort", {"reasoning": {"effort": 3}}),
    ("text.format", {"text": {"format": {"type": "json_schema"}}}),
    ("text.format", {"text": {"format": "json"}}),
])
def test_a_bad_effort_or_text_format_is_a_400_naming_it(client, runner, field, body):
    """An unknown effort level or a malformed text format is a 400 naming the field."""
    r = client.post("/openai/v1/responses", json={"model": "claude", "input": "hi", **body})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == field
    assert runner.runs == []


# -- properties ---------------------------------------------------------------------------

_SETTINGS = settings(max_examples=60, deadline=None,
                     suppress_health_check=[HealthCheck.function_scoped_fixture])


@_SETTINGS
@given(drawn=requests())
def test_well_formed_inputs_are_answered_or_refused_with_400(services, drawn):
    """Every well-formed input shape is answered, or refused with a 400 when it carries a
    part the CLIs cannot take."""
    body, refused = drawn
    with TestClient(create_app(services)) as client:
        response = client.post("/openai/v1/responses", json=body)
    if refused:
        assert response.status_code == 400, response.text
        assert response.json()["error"]["param"].startswith("input[")
    else:
        assert response.status_code == 200, response.text
        assert response.json()["output"][0]["content"][0]["text"] == "hello from fake"


@_SETTINGS
@given(body=bad_bodies)
def test_arbitrary_input_is_never_a_server_error(services, body):
    """Any JSON where the input goes is answered or refused with a 4xx in OpenAI's envelope."""
    with TestClient(create_app(services)) as client:
        response = client.post("/openai/v1/responses", json=body)
    assert response.status_code < 500, response.text
    if response.status_code != 200:
        error = response.json()["error"]
        assert error["type"] == "invalid_request_error" and error["message"]
