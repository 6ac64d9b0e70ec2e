"""The OpenAI dialect takes every field and content part of OpenAI's chat completions
(in-process, on fakes): inline text files are carried, audio and extra choices are a clear
400, and requests drawn from the whole field set are answered or refused natively."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import event, given, settings
from openai._streaming import SSEDecoder
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from starlette.testclient import TestClient

from clinvk.adapters.http.app import create_app
from clinvk.adapters.http.openai.translate import JSON_OBJECT_INSTRUCTION
from clinvk.domain.config import Config, ServerConfig
from clinvk.entrypoints.bootstrap import bootstrap
from tests.chat_strategies import openai_requests
from tests.fakes import FakeBackendRunner, FakeClock, FakeIds, FakeSessionStore

URL = "/openai/v1/chat/completions"


def chat(client, **fields):
    return client.post(URL, json={"model": "claude",
                                  "messages": [{"role": "user", "content": "hi"}], **fields})


def refused(r, param: str) -> str:
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param
    return error["message"]


@pytest.mark.parametrize("data", [
    base64.b64encode(b"def f():\n    return 1\n").decode(),
    "data:text/x-python;base64," + base64.b64encode(b"def f():\n    return 1\n").decode(),
])
def test_an_inline_text_file_is_carried_as_text(client, runner, data):
    """A `file` part with inline UTF-8 data (bare base64 or a data URL) reaches the CLI as
    its text, headed by its name."""
    content = [{"type": "text", "text": "Review this:"},
               {"type": "file", "file": {"filename": "f.py", "file_data": data}}]
    r = chat(client, messages=[{"role": "user", "content": content}])
    assert r.status_code == 200, r.text
    assert runner.runs[-1].prompt == "Review this:\nFile f.py:\ndef f():\n    return 1\n"


@pytest.mark.parametrize("file", [
    {"filename": "a.pdf", "file_data": "data:application/pdf;base64,JVBERi0xLjQ="},
    {"filename": "blob.bin", "file_data": base64.b64encode(b"\xff\xfe\x00").decode()},
    {"file_id": "file-abc"},
    {"file_data": "\x80 not base64 at all"},
])
def test_a_binary_or_uploaded_file_is_a_400_naming_the_part(client, runner, file):
    """A PDF, binary data or an uploaded file id cannot become text: 400 naming the part."""
    content = [{"type": "text", "text": "Read"}, {"type": "file", "file": file}]
    message = refused(chat(client, messages=[{"role": "user", "content": content}]),
                      "messages[0].content[1]")
    assert "file" in message and "text" in message
    assert runner.runs == []


def test_input_audio_is_a_400_saying_audio_is_not_supported(client):
    """An input_audio part is refused, saying audio is not supported."""
    content = [{"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}}]
    message = refused(chat(client, messages=[{"role": "user", "content": content}]),
                      "messages[0].content[0]")
    assert "audio input is not supported" in message


def test_audio_output_is_a_400_on_modalities(client):
    """Asking for audio output is refused; a text-only modalities list is fine."""
    message = refused(chat(client, modalities=["text", "audio"],
                           audio={"voice": "alloy", "format": "wav"}), "modalities")
    assert "audio output is not supported" in message
    assert chat(client, modalities=["text"]).status_code == 200


def test_more_than_one_choice_is_a_400_saying_only_one_is_supported(client):
    """n > 1 is refused, saying only 1 choice is supported; n = 1 is fine."""
    assert "only 1 choice" in refused(chat(client, n=2), "n")
    assert chat(client, n=1).status_code == 200


def test_every_request_field_is_accepted(client, runner):
    """Every field of OpenAI's request body is accepted (and the prompt is unchanged;
    json_object adds its instruction to the system prompt, reasoning_effort is the run's)."""
    r = chat(
        client,
        messages=[{"role": "developer", "content": "Be terse."},
                  {"role": "user", "content": [{"type": "text", "text": "hi"}], "name": "zed"}],
        tools=[{"type": "function", "function": {"name": "f", "parameters": {}}}],
        tool_choice={"type": "function", "function": {"name": "f"}},
        parallel_tool_calls=False, response_format={"type": "json_object"},
        reasoning_effort="high", verbosity="low", store=True, metadata={"k": "v"},
        modalities=["text"], prediction={"type": "content", "content": "x"},
        service_tier="flex", user="u", safety_identifier="s", prompt_cache_key="p", seed=7,
        logprobs=True, top_logprobs=2, temperature=1, top_p=1, stop="END",
        presence_penalty=0.5, frequency_penalty=-0.5, logit_bias={"50256": -100},
        web_search_options={}, functions=[{"name": "g"}], function_call="auto",
    )
    assert r.status_code == 200, r.text
    run = runner.runs[-1]
    assert run.prompt == "hi"
    # A named tool_choice no CLI has a flag for is asked of the model in the system prompt.
    assert run.system_prompt == ("Be terse.\n\n" + JSON_OBJECT_INSTRUCTION
                                 + "\n\nYou must call the tool 'f' before you answer.")
    assert run.tools is not None and run.tools.names == ("f",)
    assert run.effort == "high"
    assert r.json()["choices"][0]["logprobs"] is None


@pytest.mark.parametrize(
    ("fields", "param"),
    [({"tools": {"type": "function"}}, "tools"), ({"seed": "seven"}, "seed"),
     ({"logprobs": "yes"}, "logprobs"), ({"stop": 5}, "stop"),
     ({"reasoning_effort": 1}, "reasoning_effort"), ({"modalities": "text"}, "modalities")],
)
def test_wrongly_typed_fields_are_400_naming_the_field(client, fields, param):
    """OpenAI's fields keep their types: a wrong one is a 400 whose param names it."""
    refused(chat(client, **fields), param)


# -- properties -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fields_client(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("work")
    config = Config(server=ServerConfig(default_workdir=str(workdir), heartbeat_secs=5))
    services = bootstrap(config, runner=FakeBackendRunner(), store=FakeSessionStore(),
                         clock=FakeClock(), ids=FakeIds())
    with TestClient(create_app(services)) as client:
        yield client


@settings(max_examples=200, deadline=None)
@given(case=openai_requests())
def test_any_request_of_the_full_field_set_is_answered_or_refused_natively(fields_client, case):
    """A request drawn from every field, role and part type gets a well-formed completion
    (or a stream of chunks ending in [DONE]) unless it carries an image, audio, a binary
    file or n > 1, which is a 400 in OpenAI's envelope; never a 5xx."""
    payload, refused_body = case
    r = fields_client.post(URL, json=payload)
    event(f"status {r.status_code}")
    if refused_body:
        assert r.status_code == 400, r.text
        assert set(r.json()["error"]) == {"message", "type", "param", "code"}
        return
    assert r.status_code == 200, r.text
    if not payload.get("stream"):
        completion = ChatCompletion.model_validate(r.json())
        assert completion.choices[0].message.content == "hello from fake"
        return
    datas = [e.data for e in SSEDecoder().iter_bytes(iter([r.content]))]
    assert datas[-1] == "[DONE]"
    chunks = [ChatCompletionChunk.model_validate(json.loads(d)) for d in datas[:-1]]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "hello from fake"
