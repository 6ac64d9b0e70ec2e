"""Images, effort and structured output through a real `clinvk serve` and the real CLIs:
the model double's log shows what each CLI really put in its model call."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.support.images import data_url, png_b64
from tests.support.model_double import generation_requests

pytestmark = pytest.mark.real

BACKENDS = ["claude", "codex", "gemini"]
#: A colour no other test uses, so the image in the log is certainly this request's.
COLOUR = (12, 34, 56)
SCHEMA = {"type": "object", "properties": {"answer": {"type": "string"}},
          "required": ["answer"], "additionalProperties": False}


def _post(server, path: str, body: dict) -> httpx.Response:
    return httpx.post(server.url + path, json=body, timeout=120)


def _last_call(double) -> dict:
    calls = generation_requests(double.requests())
    assert calls, "the CLI never called the model double"
    return calls[-1]


def _images(node: Any) -> list[tuple[str, str]]:
    """(media type, base64 data) of every image in a logged model call, in any of the
    three APIs' shapes: Anthropic image blocks, Responses input_image data URLs, Gemini
    inlineData parts."""
    found: list[tuple[str, str]] = []
    if isinstance(node, list):
        for item in node:
            found += _images(item)
    elif isinstance(node, dict):
        source = node.get("source")
        if node.get("type") == "image" and isinstance(source, dict):
            found.append((source.get("media_type"), source.get("data")))
        elif node.get("type") == "input_image" and str(node.get("image_url")).startswith("data:"):
            header, _, data = node["image_url"].partition(",")
            found.append((header[5:].split(";")[0], data))
        elif isinstance(node.get("inlineData"), dict):
            found.append((node["inlineData"].get("mimeType"), node["inlineData"].get("data")))
        else:
            for value in node.values():
                found += _images(value)
    return found


def _texts(node: Any) -> str:
    return json.dumps(node)


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_anthropic_image_block_reaches_the_cli_as_an_image(clinvk_server, model_double,
                                                             backend):
    """An image block sent to /anthropic/v1/messages is in the CLI's model call as an
    image (claude: an image block; codex: an input_image; gemini: inlineData), and the
    prompt names it `[image 1]`."""
    body = {"model": backend, "max_tokens": 100, "messages": [{"role": "user", "content": [
        {"type": "text", "text": "What colour is this?"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                     "data": png_b64(COLOUR)}}]}]}
    r = _post(clinvk_server, "/anthropic/v1/messages", body)
    assert r.status_code == 200, r.text
    call = _last_call(model_double)
    assert ("image/png", png_b64(COLOUR)) in _images(call["body"])
    assert "What colour is this?" in _texts(call["body"]) and "[image 1]" in _texts(call["body"])


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_openai_image_url_reaches_the_cli_as_an_image(clinvk_server, model_double, backend):
    """An `image_url` data URL sent to /openai/v1/chat/completions is in the CLI's model
    call as an image."""
    body = {"model": backend, "messages": [{"role": "user", "content": [
        {"type": "text", "text": "Describe it"},
        {"type": "image_url", "image_url": {"url": data_url(COLOUR)}}]}]}
    r = _post(clinvk_server, "/openai/v1/chat/completions", body)
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"] == "w0 w1 w2 w3 w4"
    assert ("image/png", png_b64(COLOUR)) in _images(_last_call(model_double)["body"])


def test_a_remote_image_is_refused_before_any_cli_runs(clinvk_server, model_double):
    """With server.fetch_remote_images off (the default) an http(s) image is a 400 and no
    CLI calls the model."""
    body = {"model": "claude", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "x"},
        {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]}]}
    r = _post(clinvk_server, "/openai/v1/chat/completions", body)
    assert r.status_code == 400 and "server.fetch_remote_images" in r.json()["error"]["message"]
    assert generation_requests(model_double.requests()) == []


def test_effort_reaches_claudes_model_call(clinvk_server, model_double):
    """Anthropic's output_config.effort becomes claude's --effort, which claude sends as
    output_config.effort in its own call."""
    body = {"model": "claude", "max_tokens": 100, "output_config": {"effort": "low"},
            "messages": [{"role": "user", "content": "hi"}]}
    assert _post(clinvk_server, "/anthropic/v1/messages", body).status_code == 200
    assert _last_call(model_double)["body"]["output_config"]["effort"] == "low"


def test_effort_reaches_codexs_model_call(clinvk_server, model_double):
    """OpenAI's reasoning_effort becomes codex's model_reasoning_effort, which codex sends
    as reasoning.effort in its Responses call."""
    body = {"model": "codex", "reasoning_effort": "minimal",
            "messages": [{"role": "user", "content": "hi"}]}
    assert _post(clinvk_server, "/openai/v1/chat/completions", body).status_code == 200
    assert _last_call(model_double)["body"]["reasoning"]["effort"] == "minimal"


def test_json_schema_reaches_claudes_model_call(clinvk_server, model_double):
    """A json_schema response_format becomes claude's --json-schema: its model call offers
    the StructuredOutput tool with exactly that schema."""
    body = {"model": "claude", "messages": [{"role": "user", "content": "hi"}],
            "response_format": {"type": "json_schema",
                                "json_schema": {"name": "a", "schema": SCHEMA, "strict": True}}}
    assert _post(clinvk_server, "/openai/v1/chat/completions", body).status_code == 200
    tools = {t["name"]: t for t in _last_call(model_double)["body"]["tools"]}
    assert tools["StructuredOutput"]["input_schema"] == SCHEMA


def test_json_schema_reaches_codexs_model_call(clinvk_server, model_double):
    """Anthropic's output_config.format becomes codex's --output-schema: its Responses
    call asks for text.format json_schema with exactly that schema."""
    body = {"model": "codex", "max_tokens": 100,
            "output_config": {"format": {"type": "json_schema", "schema": SCHEMA}},
            "messages": [{"role": "user", "content": "hi"}]}
    assert _post(clinvk_server, "/anthropic/v1/messages", body).status_code == 200
    fmt = _last_call(model_double)["body"]["text"]["format"]
    assert fmt["type"] == "json_schema" and fmt["schema"] == SCHEMA


def test_effort_reaches_geminis_model_call(clinvk_server, model_double):
    """For a gemini 2.x model the effort becomes a thinking budget in gemini's settings
    (an override for that model), which gemini sends as generationConfig.thinkingConfig."""
    body = {"model": "gemini", "max_tokens": 100, "output_config": {"effort": "low"},
            "messages": [{"role": "user", "content": "hi"}]}
    assert _post(clinvk_server, "/anthropic/v1/messages", body).status_code == 200
    thinking = _last_call(model_double)["body"]["generationConfig"]["thinkingConfig"]
    assert thinking["thinkingBudget"] == 1024
    model_double.clear_log()
    body["output_config"] = {"effort": "high"}
    assert _post(clinvk_server, "/anthropic/v1/messages", body).status_code == 200
    thinking = _last_call(model_double)["body"]["generationConfig"]["thinkingConfig"]
    assert thinking["thinkingBudget"] == 24576


@pytest.mark.parametrize("backend", ["codex", "gemini"])
def test_a_responses_input_image_reaches_the_cli_as_an_image(clinvk_server, model_double,
                                                             backend):
    """A Responses API `input_image` (data URL) is in the CLI's model call as an image."""
    body = {"model": backend, "input": [{"role": "user", "content": [
        {"type": "input_text", "text": "Describe it"},
        {"type": "input_image", "image_url": data_url(COLOUR)}]}]}
    r = _post(clinvk_server, "/openai/v1/responses", body)
    assert r.status_code == 200, r.text
    assert ("image/png", png_b64(COLOUR)) in _images(_last_call(model_double)["body"])


def test_the_run_folder_is_gone_after_the_run(model_double, tmp_path):
    """The images a CLI was given lay in a per-run folder under the server's temp dir
    (codex names the file in its model call, gemini lists the folder in its workspace), and
    that folder is gone once the answer is back (its modes: tests/unit/test_run_files.py)."""
    from tests.support.server import ClinvkServer

    temp = tmp_path / "server-tmp"
    temp.mkdir()
    server = ClinvkServer(model_double.url, tmp_path / "scratch",
                          env={"TMPDIR": str(temp)}).start()
    try:
        for backend in ("codex", "gemini"):
            model_double.clear_log()
            body = {"model": backend, "messages": [{"role": "user", "content": [
                {"type": "text", "text": "see"},
                {"type": "image_url", "image_url": {"url": data_url(COLOUR)}}]}]}
            r = _post(server, "/openai/v1/chat/completions", body)
            assert r.status_code == 200, r.text
            call = _texts(_last_call(model_double)["body"])
            assert str(temp / "clinvk-run-") in call, f"{backend} was not given the run folder"
            assert list(temp.glob("clinvk-run-*")) == []
    finally:
        server.stop()


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_image_in_a_continued_session_reaches_the_resumed_cli(clinvk_server, model_double,
                                                                 backend):
    """The second turn of a session, sent with an image, resumes the CLI's own session
    (the model call carries the first turn) and carries the image."""
    first = _post(clinvk_server, "/openai/v1/chat/completions",
                  {"model": backend, "messages": [{"role": "user", "content": "My name is Zed"}]})
    assert first.status_code == 200, first.text
    session = first.headers["x-clinvk-session-id"]
    model_double.clear_log()
    body = {"model": backend, "clinvk": {"session_id": session}, "messages": [
        {"role": "user", "content": "My name is Zed"},
        {"role": "assistant", "content": first.json()["choices"][0]["message"]["content"]},
        {"role": "user", "content": [{"type": "text", "text": "And this?"},
                                     {"type": "image_url", "image_url": {"url": data_url(COLOUR)}}]}]}
    r = _post(clinvk_server, "/openai/v1/chat/completions", body)
    assert r.status_code == 200, r.text
    call = _last_call(model_double)["body"]
    assert "My name is Zed" in _texts(call)
    assert _images(call) == [("image/png", png_b64(COLOUR))]


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_large_prompt_with_an_image_reaches_the_cli(clinvk_server, model_double, backend):
    """A prompt too large for argv (it goes on stdin) still travels with its image, on the
    native API."""
    prompt = "x" * 120_000 + " what is [image 1]?"
    r = _post(clinvk_server, "/api/v1/prompt",
              {"backend": backend, "prompt": prompt, "images": [{"data": png_b64(COLOUR)}]})
    assert r.status_code == 200, r.text
    call = _last_call(model_double)["body"]
    assert ("image/png", png_b64(COLOUR)) in _images(call)
    assert "x" * 120_000 in _texts(call)


def test_claudes_structured_output_is_the_answer(clinvk_server, model_double):
    """When claude's model answers through the StructuredOutput tool (the double calls it
    with an object), that object, as JSON, is the answer's content."""
    model_double.set(tool_use={"name": "StructuredOutput", "input": {"answer": "forty-two"}})
    body = {"model": "claude", "messages": [{"role": "user", "content": "the answer?"}],
            "response_format": {"type": "json_schema",
                                "json_schema": {"name": "a", "schema": SCHEMA, "strict": True}}}
    r = _post(clinvk_server, "/openai/v1/chat/completions", body)
    assert r.status_code == 200, r.text
    assert json.loads(r.json()["choices"][0]["message"]["content"]) == {"answer": "forty-two"}


def test_claudes_structured_output_is_streamed(clinvk_server, model_double):
    """A streamed answer carries the structured output as its text too (claude's model
    answered through the tool, with no text of its own)."""
    model_double.set(tool_use={"name": "StructuredOutput", "input": {"answer": "streamed"}})
    body = {"model": "claude", "stream": True,
            "messages": [{"role": "user", "content": "the answer?"}],
            "response_format": {"type": "json_schema",
                                "json_schema": {"name": "a", "schema": SCHEMA, "strict": True}}}
    text = ""
    with httpx.stream("POST", clinvk_server.url + "/openai/v1/chat/completions", json=body,
                      timeout=120) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            if line.startswith("data: {"):
                for choice in json.loads(line[6:])["choices"]:
                    text += choice["delta"].get("content") or ""
    assert json.loads(text) == {"answer": "streamed"}
