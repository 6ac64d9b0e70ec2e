"""The `openai` SDK's Responses API against a real `clinvk serve`, the real CLIs and the
model double."""

from __future__ import annotations

import openai
import pytest
from openai import OpenAI

from tests.support.model_double import assistant_texts, generation_requests, user_texts

pytestmark = pytest.mark.real

BACKENDS = ["claude", "codex", "gemini"]


@pytest.fixture
def client(clinvk_server):
    with OpenAI(base_url=clinvk_server.url + "/openai/v1", api_key="not-needed",
                max_retries=0, timeout=60) as c:
        yield c


def _last_generation(double) -> dict:
    calls = generation_requests(double.requests())
    assert calls, "the CLI never called the model double"
    return calls[-1]


@pytest.mark.parametrize("backend", BACKENDS)
def test_create_then_continue_with_previous_response_id(client, model_double, backend):
    """responses.create answers with the double's text and usage; a follow-up with
    previous_response_id resumes the CLI's session, sending only the new input."""
    model_double.set(reply="Hello Zed", input_tokens=11)
    first = client.responses.create(model=backend, input="My name is Zed. Remember it.")
    assert first.status == "completed"
    assert first.output_text == "Hello Zed"
    assert first.usage is not None
    assert (first.usage.input_tokens, first.usage.output_tokens) == (11, 2)
    model_double.set(reply="Your name is Zed")
    second = client.responses.create(model=backend, input="What is my name?",
                                     previous_response_id=first.id)
    assert second.output_text == "Your name is Zed"
    request = _last_generation(model_double)
    users = user_texts(request)
    assert any("My name is Zed. Remember it." in t for t in users)
    assert any(t.rstrip("\n") == "What is my name?" for t in users)
    assert not any("The conversation so far" in t for t in users)
    assert any("Hello Zed" in t for t in assistant_texts(request))
    assert client.responses.retrieve(second.id).output_text == "Your name is Zed"


@pytest.mark.parametrize("backend", BACKENDS)
def test_stream_helper_gives_the_streamed_text(client, model_double, backend):
    """responses.stream(...) streams the CLI's text and get_final_response() agrees."""
    model_double.set(words=5)
    with client.responses.stream(model=backend, input="Say hi") as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == final.output_text == "w0 w1 w2 w3 w4"
    assert final.usage is not None and final.usage.output_tokens == 5


def test_image_input_that_is_no_image_is_a_bad_request_error(client):
    """An input_image whose data is not an image is a 400 naming the part (real images
    reach the CLIs: test_images_real.py)."""
    with pytest.raises(openai.BadRequestError) as info:
        client.responses.create(model="claude", input=[{"role": "user", "content": [
            {"type": "input_image", "image_url": "data:image/png;base64,AA=="}]}])
    assert info.value.body["param"] == "input[0].content[0]"


@pytest.mark.parametrize("backend", BACKENDS)
def test_previous_response_id_of_an_earlier_turn_branches(client, model_double, backend):
    """Continuing from an earlier response (not the latest) answers from a new CLI session
    whose prompt holds the conversation up to that response and not the later turn."""
    model_double.set(reply="Hello Zed")
    first = client.responses.create(model=backend, input="My name is Zed.")
    model_double.set(reply="Noted, Ann")
    client.responses.create(model=backend, input="Call me Ann instead.",
                            previous_response_id=first.id)
    model_double.set(reply="Zed")
    branch = client.responses.create(model=backend, input="What is my name?",
                                     previous_response_id=first.id)
    assert branch.output_text == "Zed" and branch.previous_response_id == first.id
    request = _last_generation(model_double)
    seen = "\n".join(user_texts(request) + assistant_texts(request))
    assert "My name is Zed." in seen and "Hello Zed" in seen
    assert "Ann" not in seen
    assert any(t.rstrip("\n").endswith("What is my name?") for t in user_texts(request))
