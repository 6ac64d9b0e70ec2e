"""Images, effort and structured output through each dialect, on fakes: what reaches the
domain's RunSpec, and the 400 / 413 refusals in each dialect's own envelope."""

from __future__ import annotations

import base64

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from clinvk.adapters.http.app import create_app
from clinvk.adapters.http.openai.translate import JSON_OBJECT_INSTRUCTION
from clinvk.domain.config import Config, ServerConfig
from clinvk.domain.images import sniff
from clinvk.domain.models import ImageInput
from clinvk.entrypoints.bootstrap import bootstrap
from tests.fakes import (
    FakeBackendRunner,
    FakeClock,
    FakeIds,
    FakeImageFetcher,
    FakeSessionStore,
)
from tests.support.images import data_url, png_b64, png_bytes

ANTHROPIC = "/anthropic/v1/messages"
COUNT = "/anthropic/v1/messages/count_tokens"
OPENAI = "/openai/v1/chat/completions"
NATIVE = "/api/v1/prompt"

#: Small limits so a test can cross them with a few bytes.
MAX_BYTES = 1000
MAX_IMAGES = 2
BIG = base64.b64encode(png_bytes() + b"\x00" * MAX_BYTES).decode()
REMOTE = "https://example.com/cat.png"


@pytest.fixture
def fetcher() -> FakeImageFetcher:
    return FakeImageFetcher(png_bytes((1, 2, 3)))


def _config(tmp_path, **server) -> Config:
    return Config(server=ServerConfig(default_workdir=str(tmp_path), heartbeat_secs=0.2,
                                      max_image_bytes=MAX_BYTES, max_images=MAX_IMAGES,
                                      **server))


@pytest.fixture
def config(tmp_path) -> Config:
    return _config(tmp_path)


@pytest.fixture
def services(config, runner, store, fetcher):
    return bootstrap(config, runner=runner, store=store, clock=FakeClock(), ids=FakeIds(),
                     images=fetcher)


@pytest.fixture
def fetching_client(tmp_path, runner, store, fetcher):
    services = bootstrap(_config(tmp_path, fetch_remote_images=True), runner=runner,
                         store=store, clock=FakeClock(), ids=FakeIds(), images=fetcher)
    with TestClient(create_app(services)) as c:
        yield c


def anthropic_image(data: str = "", media_type: str = "image/png") -> dict:
    return {"type": "image",
            "source": {"type": "base64", "media_type": media_type, "data": data or png_b64()}}


def anthropic(client, content, **fields):
    body = {"model": "claude", "max_tokens": 100,
            "messages": [{"role": "user", "content": content}], **fields}
    return client.post(ANTHROPIC, json=body)


def openai_image(url: str = "") -> dict:
    return {"type": "image_url", "image_url": {"url": url or data_url(), "detail": "high"}}


def openai(client, content, **fields):
    body = {"model": "codex", "messages": [{"role": "user", "content": content}], **fields}
    return client.post(OPENAI, json=body)


def anthropic_error(r, status: int, kind: str) -> str:
    assert r.status_code == status, r.text
    assert r.json()["type"] == "error" and r.json()["error"]["type"] == kind
    return r.json()["error"]["message"]


def openai_error(r, status: int) -> dict:
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return error


# -- images reach the run ------------------------------------------------------------------


def test_anthropic_image_block_reaches_the_run_as_an_image(client, runner):
    """A base64 image block becomes an image of the run, named `[image 1]` where it was."""
    r = anthropic(client, [{"type": "text", "text": "What is this?"}, anthropic_image()])
    assert r.status_code == 200, r.text
    run = runner.runs[-1]
    assert run.images == (ImageInput(media_type="image/png", data=png_bytes()),)
    assert run.prompt == "What is this?\n[image 1]"


def test_openai_image_parts_reach_the_run_in_order(client, runner):
    """`image_url` data URLs (object and string forms) become the run's images, in the
    order the message gives them."""
    red, blue = data_url((255, 0, 0)), data_url((0, 0, 255))
    content = [{"type": "text", "text": "compare"}, openai_image(red),
               {"type": "image_url", "image_url": blue}]
    r = openai(client, content)
    assert r.status_code == 200, r.text
    run = runner.runs[-1]
    assert [im.data for im in run.images] == [png_bytes((255, 0, 0)), png_bytes((0, 0, 255))]
    assert run.prompt == "compare\n[image 1]\n[image 2]"


def test_native_api_takes_images_as_base64(client, runner):
    """The native API's `images` carry base64 data; the media type is read from the bytes
    when it is not given."""
    r = client.post(NATIVE, json={"backend": "gemini", "prompt": "describe [image 1]",
                                  "images": [{"data": png_b64()}]})
    assert r.status_code == 200, r.text
    assert runner.runs[-1].images == (ImageInput(media_type="image/png", data=png_bytes()),)


def test_a_continued_session_gets_only_the_new_turns_images(client, runner):
    """With clinvk.session_id only the new turns are sent, and only their images go along,
    numbered from 1 again."""
    first = openai(client, [{"type": "text", "text": "one"}, openai_image(data_url((9, 9, 9)))])
    session = first.headers["x-clinvk-session-id"]
    messages = [
        {"role": "user", "content": [{"type": "text", "text": "one"},
                                     openai_image(data_url((9, 9, 9)))]},
        {"role": "assistant", "content": "hello from fake"},
        {"role": "user", "content": [{"type": "text", "text": "two"},
                                     openai_image(data_url((7, 7, 7)))]},
    ]
    r = client.post(OPENAI, json={"model": "codex", "messages": messages,
                                  "clinvk": {"session_id": session}})
    assert r.status_code == 200, r.text
    run = runner.runs[-1]
    assert [im.data for im in run.images] == [png_bytes((7, 7, 7))]
    assert run.prompt == "two\n[image 1]"


def test_remote_images_are_fetched_when_the_server_allows_it(fetching_client, runner, fetcher):
    """With server.fetch_remote_images on, an http(s) image is downloaded through the
    ImageFetcher port and reaches the run as bytes."""
    r = anthropic(fetching_client, [{"type": "text", "text": "see"},
                                    {"type": "image", "source": {"type": "url", "url": REMOTE}}])
    assert r.status_code == 200, r.text
    assert fetcher.urls == [REMOTE]
    assert runner.runs[-1].images == (ImageInput(media_type="image/png",
                                                 data=png_bytes((1, 2, 3))),)
    r = openai(fetching_client, [{"type": "text", "text": "see"}, openai_image(REMOTE)])
    assert r.status_code == 200, r.text
    assert fetcher.urls == [REMOTE, REMOTE]


# -- refusals in each dialect's envelope ---------------------------------------------------


def test_remote_image_is_400_when_fetching_is_off(client, runner, fetcher):
    """An http(s) image while server.fetch_remote_images is off is a 400 that says so, in
    each dialect's error shape, and nothing runs or is fetched."""
    message = anthropic_error(
        anthropic(client, [{"type": "text", "text": "see"},
                           {"type": "image", "source": {"type": "url", "url": REMOTE}}]),
        400, "invalid_request_error")
    assert message.startswith("messages.0.content.1.source.url:")
    assert "server.fetch_remote_images" in message
    error = openai_error(openai(client, [{"type": "text", "text": "x"}, openai_image(REMOTE)]),
                         400)
    assert error["type"] == "invalid_request_error"
    assert error["param"] == "messages[0].content[1].image_url"
    assert "server.fetch_remote_images" in error["message"]
    r = client.post(NATIVE, json={"backend": "claude", "prompt": "x",
                                  "images": [{"url": REMOTE}]})
    assert r.status_code == 400 and r.json()["field"] == "images.0"
    assert "server.fetch_remote_images" in r.json()["detail"]
    assert runner.runs == [] and fetcher.urls == []


def test_an_image_over_the_size_limit_is_413(client, runner):
    """An image over server.max_image_bytes is a 413 in each dialect's error shape."""
    message = anthropic_error(anthropic(client, [{"type": "text", "text": "x"},
                                                 anthropic_image(BIG)]),
                              413, "request_too_large")
    assert "server.max_image_bytes" in message
    error = openai_error(
        openai(client, [{"type": "text", "text": "x"},
                        openai_image("data:image/png;base64," + BIG)]), 413)
    assert error["param"] == "messages[0].content[1].image_url"
    assert "server.max_image_bytes" in error["message"]
    r = client.post(NATIVE, json={"backend": "claude", "prompt": "x", "images": [{"data": BIG}]})
    assert r.status_code == 413 and r.json()["field"] == "images.0"
    assert runner.runs == []


def test_a_remote_image_over_the_size_limit_is_413(fetching_client, runner, fetcher):
    """A downloaded image over the limit is refused with 413 too."""
    fetcher.image = png_bytes() + b"\x00" * MAX_BYTES
    r = openai(fetching_client, [{"type": "text", "text": "x"}, openai_image(REMOTE)])
    assert "server.max_image_bytes" in openai_error(r, 413)["message"]
    assert runner.runs == []


def test_more_images_than_allowed_is_400(client, runner):
    """More images than server.max_images is a 400 naming the first one over."""
    content = [{"type": "text", "text": "x"}] + [anthropic_image()] * (MAX_IMAGES + 1)
    message = anthropic_error(anthropic(client, content), 400, "invalid_request_error")
    assert message.startswith(f"messages.0.content.{MAX_IMAGES + 1}.source:")
    assert "server.max_images" in message
    error = openai_error(openai(client, [{"type": "text", "text": "x"}]
                                + [openai_image()] * (MAX_IMAGES + 1)), 400)
    assert "server.max_images" in error["message"]
    r = client.post(NATIVE, json={"backend": "claude", "prompt": "x",
                                  "images": [{"data": png_b64()}] * (MAX_IMAGES + 1)})
    assert r.status_code == 400 and r.json()["field"] == "images"
    assert runner.runs == []


@pytest.mark.parametrize(
    ("block", "wording"),
    [(anthropic_image(media_type="image/bmp"), "not supported"),
     (anthropic_image(data="not base64!"), "not valid base64"),
     ({"type": "image", "source": {"type": "file", "file_id": "file_1"}}, "not supported")],
)
def test_unusable_anthropic_images_are_400(client, runner, block, wording):
    """An image of an unsupported type, bad base64 or an uploaded file id is a 400."""
    message = anthropic_error(anthropic(client, [{"type": "text", "text": "x"}, block]), 400,
                              "invalid_request_error")
    assert message.startswith("messages.0.content.1.source") and wording in message
    assert runner.runs == []


@pytest.mark.parametrize(
    ("url", "wording"),
    [("data:image/png,raw", "must be base64"), ("file:///etc/passwd", "data: URL or an http"),
     ("data:image/tiff;base64," + png_b64(), "not supported")],
)
def test_unusable_openai_image_urls_are_400(client, runner, url, wording):
    """A non-base64 data URL, another scheme or an unsupported type is a 400 naming it."""
    error = openai_error(openai(client, [{"type": "text", "text": "x"}, openai_image(url)]), 400)
    assert error["param"] == "messages[0].content[1].image_url" and wording in error["message"]
    assert runner.runs == []


def test_an_image_outside_a_user_message_is_400(client, runner):
    """OpenAI takes images in user messages only; one in a system message is a 400."""
    r = client.post(OPENAI, json={"model": "codex", "messages": [
        {"role": "system", "content": [{"type": "text", "text": "s"}, openai_image()]},
        {"role": "user", "content": "hi"}]})
    assert openai_error(r, 400)["param"] == "messages[0].content[1]"
    assert runner.runs == []


def test_audio_stays_refused(client, runner):
    """`input_audio` is still a 400: no CLI takes audio."""
    part = {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}
    error = openai_error(openai(client, [{"type": "text", "text": "x"}, part]), 400)
    assert "audio" in error["message"]
    assert runner.runs == []


def test_count_tokens_counts_images(client):
    """count_tokens adds a fixed estimate per image."""
    def count(content) -> int:
        r = client.post(COUNT, json={"model": "claude",
                                     "messages": [{"role": "user", "content": content}]})
        assert r.status_code == 200, r.text
        return r.json()["input_tokens"]

    text = [{"type": "text", "text": "what is it"}]
    assert count(text + [anthropic_image()]) >= count(text) + 1000


# -- effort and structured output ------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "effort"),
    [({"output_config": {"effort": "high"}}, "high"),
     ({"output_config": {"effort": "max"}, "thinking": {"type": "disabled"}}, "max"),
     ({"thinking": {"type": "adaptive"}}, None),
     ({"thinking": {"type": "disabled"}}, "minimal"),
     ({"thinking": {"type": "enabled", "budget_tokens": 2048}}, "low"),
     ({"thinking": {"type": "enabled", "budget_tokens": 10000}}, "medium"),
     ({"thinking": {"type": "enabled", "budget_tokens": 32000}}, "high"),
     ({"output_config": {"effort": "low"}, "clinvk": {"effort": "xhigh"}}, "xhigh")],
)
def test_anthropic_effort_reaches_the_run(client, runner, fields, effort):
    """output_config.effort (else thinking's budget) is the run's effort; clinvk.effort
    overrides both."""
    r = anthropic(client, "hi", **fields)
    assert r.status_code == 200, r.text
    assert runner.runs[-1].effort == effort


@pytest.mark.parametrize(
    ("value", "effort"),
    [("none", "minimal"), ("minimal", "minimal"), ("low", "low"), ("medium", "medium"),
     ("high", "high"), ("xhigh", "xhigh")],
)
def test_openai_reasoning_effort_reaches_the_run(client, runner, value, effort):
    """reasoning_effort is the run's effort (`none` is the least there is: minimal)."""
    assert openai(client, "hi", reasoning_effort=value).status_code == 200
    assert runner.runs[-1].effort == effort


def test_unknown_effort_is_400_in_each_dialect(client, runner):
    """An effort level neither API knows is a 400 naming the field."""
    message = anthropic_error(anthropic(client, "hi", output_config={"effort": "extreme"}), 400,
                              "invalid_request_error")
    assert message.startswith("output_config.effort:")
    assert openai_error(openai(client, "hi", reasoning_effort="extreme"),
                        400)["param"] == "reasoning_effort"
    assert runner.runs == []


def test_json_schema_formats_reach_the_run(client, runner):
    """OpenAI's json_schema response_format and Anthropic's output_config.format become
    the run's output schema."""
    schema = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}
    fmt = {"type": "json_schema", "json_schema": {"name": "x", "schema": schema, "strict": True}}
    assert openai(client, "hi", response_format=fmt).status_code == 200
    assert runner.runs[-1].output_schema == schema
    r = anthropic(client, "hi", output_config={"format": {"type": "json_schema",
                                                          "schema": schema}})
    assert r.status_code == 200, r.text
    assert runner.runs[-1].output_schema == schema


def test_json_object_format_becomes_an_instruction(client, runner):
    """response_format json_object adds a JSON-only instruction to the system prompt."""
    r = client.post(OPENAI, json={"model": "codex", "response_format": {"type": "json_object"},
                                  "messages": [{"role": "system", "content": "Be terse."},
                                               {"role": "user", "content": "hi"}]})
    assert r.status_code == 200, r.text
    assert runner.runs[-1].system_prompt == "Be terse.\n\n" + JSON_OBJECT_INSTRUCTION
    assert runner.runs[-1].output_schema is None


def test_malformed_formats_are_400(client, runner):
    """A json_schema format without a schema object is a 400 in each dialect."""
    error = openai_error(openai(client, "hi", response_format={"type": "json_schema"}), 400)
    assert error["param"] == "response_format"
    message = anthropic_error(anthropic(client, "hi", output_config={"format": {"type": "x"}}),
                              400, "invalid_request_error")
    assert message.startswith("output_config.format:")
    assert runner.runs == []


# -- the Responses API ---------------------------------------------------------------------

RESPONSES = "/openai/v1/responses"


def test_responses_input_image_reaches_the_run(client, runner):
    """A Responses `input_image` (data URL) in a user message is an image of the run."""
    r = client.post(RESPONSES, json={"model": "codex", "input": [{"role": "user", "content": [
        {"type": "input_text", "text": "what is it"},
        {"type": "input_image", "image_url": data_url((3, 3, 3)), "detail": "auto"}]}]})
    assert r.status_code == 200, r.text
    run = runner.runs[-1]
    assert [im.data for im in run.images] == [png_bytes((3, 3, 3))]
    assert run.prompt == "what is it\n[image 1]"


@pytest.mark.parametrize(
    ("part", "status", "wording"),
    [({"type": "input_image", "image_url": REMOTE}, 400, "server.fetch_remote_images"),
     ({"type": "input_image", "image_url": "data:image/png;base64," + BIG}, 413,
      "server.max_image_bytes"),
     ({"type": "input_image", "file_id": "file-1"}, 400, "file_id")],
)
def test_unusable_responses_images_are_refused(client, runner, part, status, wording):
    """A remote image (fetching off), one over the size limit or an uploaded file id is
    refused in OpenAI's envelope, naming the part."""
    r = client.post(RESPONSES, json={"model": "codex", "input": [{"role": "user", "content": [
        {"type": "input_text", "text": "x"}, part]}]})
    error = openai_error(r, status)
    assert error["param"].startswith("input[0].content[1]") and wording in error["message"]
    assert runner.runs == []


# -- properties ------------------------------------------------------------------------------

_image_entries = st.one_of(
    st.builds(lambda d: {"data": base64.b64encode(d).decode()}, st.binary(max_size=64)),
    st.builds(lambda rgb: {"data": png_b64(rgb)}, st.tuples(*[st.integers(0, 255)] * 3)),
    st.builds(lambda t, rgb: {"data": png_b64(rgb), "media_type": t},
              st.sampled_from(["image/png", "image/jpeg", "image/gif", "image/webp"]),
              st.tuples(*[st.integers(0, 255)] * 3)),
    st.builds(lambda u: {"url": u}, st.sampled_from([REMOTE, "file:///etc/passwd", "x"])),
    st.just({"data": BIG}),
    st.just({}),
)


@pytest.fixture(scope="module")
def property_client(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("work")
    runner = FakeBackendRunner()
    services = bootstrap(_config(workdir), runner=runner, store=FakeSessionStore(),
                         clock=FakeClock(), ids=FakeIds(), images=FakeImageFetcher(png_bytes()))
    with TestClient(create_app(services)) as c:
        yield c, runner


@settings(max_examples=60, deadline=None)
@given(images=st.lists(_image_entries, max_size=MAX_IMAGES + 1))
@example(images=[{"data": "/9j/"}])  # random bytes that start like a JPEG (found by a run)
def test_any_native_images_are_run_or_refused_with_a_4xx(property_client, images):
    """Any list of images on the native API is run (each image then of the type its bytes
    start like, whatever the request said) or refused with a 400/413 problem naming
    `images`; never a 5xx."""
    client, runner = property_client
    before = len(runner.runs)
    r = client.post(NATIVE, json={"backend": "claude", "prompt": "look", "images": images})
    assert r.status_code in (200, 400, 413), r.text
    if r.status_code == 200:
        run = runner.runs[before]
        assert len(run.images) == len(images)
        assert all(im.media_type is not None and sniff(im.data) == im.media_type
                   for im in run.images)
    else:
        assert (r.json()["field"] or "").startswith("images")
        assert len(runner.runs) == before
