"""The Anthropic-compatible dialect (`/anthropic/v1`), in-process on fakes."""

from __future__ import annotations

import json

import msgspec
import pytest
from starlette.testclient import TestClient

from clinvk.adapters.http.app import create_app
from clinvk.domain.chat import Turn, render_conversation
from clinvk.domain.config import Config, ServerConfig
from clinvk.domain.errors import (
    BackendFailed,
    BackendLimited,
    BackendOverloaded,
    BackendTimeout,
    BackendUnavailable,
    Overloaded,
    SessionBusy,
    SessionNotFound,
    WorkdirForbidden,
)
from clinvk.domain.models import TokenUsage
from clinvk.entrypoints.bootstrap import bootstrap
from tests.fakes import AppSpy, FakeBackendRunner, FakeClock, FakeIds, FakeSessionStore

URL = "/anthropic/v1/messages"


def body(**fields):
    """A minimal valid Messages request, with fields overridden."""
    return {"model": "claude", "max_tokens": 1024,
            "messages": [{"role": "user", "content": "Hello!"}], **fields}


def sse_events(text: str) -> list[tuple[str, dict]]:
    """(event name, data) pairs of an SSE body."""
    events = []
    for frame in text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in frame.splitlines())
        events.append((lines["event"], json.loads(lines["data"])))
    return events


def assert_envelope(r, status: int, kind: str) -> dict:
    assert r.status_code == status, r.text
    payload = r.json()
    assert payload["type"] == "error" and payload["error"]["type"] == kind
    assert isinstance(payload["error"]["message"], str) and payload["error"]["message"]
    return payload["error"]


# -- non-streamed answers ----------------------------------------------------------------


def test_message_has_anthropics_shape(client):
    """A non-streamed answer is a `message` with a msg_ id, one text block, the requested
    model, end_turn and the CLI's real token counts."""
    r = client.post(URL, json=body(), headers={"anthropic-version": "2023-06-01"})
    assert r.status_code == 200, r.text
    m = r.json()
    assert m["id"].startswith("msg_") and m["type"] == "message" and m["role"] == "assistant"
    assert m["content"] == [{"type": "text", "text": "hello from fake"}]
    assert m["model"] == "claude"
    assert m["stop_reason"] == "end_turn" and m["stop_sequence"] is None
    assert m["usage"] == {"input_tokens": 3, "output_tokens": 3}


def test_both_base_url_forms_reach_messages(client):
    """The SDK appends /v1/messages to its base URL, so /anthropic/v1/v1/messages works too."""
    r = client.post("/anthropic/v1/v1/messages", json=body())
    assert r.status_code == 200 and r.json()["content"][0]["text"] == "hello from fake"


def test_cache_reads_are_reported_apart_from_input(client, runner):
    """Cached input tokens appear as cache_read_input_tokens and are not in input_tokens."""
    runner.usage = TokenUsage(input_tokens=10, output_tokens=2, cached_tokens=4)
    usage = client.post(URL, json=body()).json()["usage"]
    assert usage == {"input_tokens": 6, "output_tokens": 2, "cache_read_input_tokens": 4}


@pytest.mark.parametrize("limit", ["max_tokens", "max_turns"])
def test_a_run_stopped_on_a_limit_ends_with_max_tokens(client, runner, limit):
    """A CLI that stopped on its token or turn limit answers stop_reason max_tokens."""
    plain_run = runner.run

    async def limited(spec, on_event=None):
        return msgspec.structs.replace(await plain_run(spec, on_event), stop_reason=limit)

    runner.run = limited
    assert client.post(URL, json=body()).json()["stop_reason"] == "max_tokens"
    _, text = stream(client)
    assert sse_events(text)[-2][1]["delta"]["stop_reason"] == "max_tokens"


def test_lone_user_message_is_sent_verbatim_with_max_tokens(client, runner):
    """A single user message reaches the CLI verbatim, with max_tokens passed on."""
    client.post(URL, json=body(max_tokens=77, messages=[{"role": "user", "content": "-x hi"}]))
    spec = runner.runs[-1]
    assert spec.prompt == "-x hi" and spec.max_tokens == 77 and spec.backend == "claude"


def test_system_string_and_blocks_become_the_system_prompt(client, runner):
    """`system` as a string or as text blocks becomes the CLI's system prompt."""
    client.post(URL, json=body(system="Be terse."))
    assert runner.runs[-1].system_prompt == "Be terse."
    blocks = [{"type": "text", "text": "Be terse.", "cache_control": {"type": "ephemeral"}},
              {"type": "text", "text": "Answer in French."}]
    client.post(URL, json=body(system=blocks))
    assert runner.runs[-1].system_prompt == "Be terse.\nAnswer in French."


def test_earlier_turns_use_the_shared_renderer_and_drop_thinking(client, runner):
    """Earlier turns go through the shared conversation renderer; thinking blocks are dropped."""
    messages = [
        {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "easy", "signature": "sig"},
            {"type": "redacted_thinking", "data": "xx"},
            {"type": "text", "text": "4"},
        ]},
        {"role": "user", "content": [{"type": "text", "text": "And 3+3?"},
                                     {"type": "text", "text": "Be brief."}]},
    ]
    r = client.post(URL, json=body(messages=messages))
    assert r.status_code == 200, r.text
    assert runner.runs[-1].prompt == render_conversation([
        Turn(role="user", text="What is 2+2?"),
        Turn(role="assistant", text="4"),
        Turn(role="user", text="And 3+3?\nBe brief."),
    ])


@pytest.mark.parametrize(
    ("block", "named"),
    [
        ({"type": "document", "source": {"type": "base64", "media_type": "application/pdf",
                                         "data": "JVBERi0xLjQ="}},
         "document blocks with application/pdf content"),
        ({"type": "document", "source": {"type": "file", "file_id": "file_1"}},
         "document blocks with file content"),
    ],
)
def test_blocks_that_cannot_become_text_are_400_naming_the_block(client, runner, block, named):
    """A binary document is a 400 invalid_request_error naming where it is (images are
    carried: tests/http/test_images.py)."""
    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"},
                {"role": "user", "content": [{"type": "text", "text": "see"}, block]}]
    error = assert_envelope(client.post(URL, json=body(messages=messages)), 400,
                            "invalid_request_error")
    assert error["message"].startswith(f"messages.2.content.1: {named} are not supported")
    assert runner.runs == []


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"max_tokens": None}, "max_tokens"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"model": None}, "model"),
        ({"messages": None}, "messages"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "developer", "content": "x"}]}, "messages.0.role"),
        ({"messages": [{"role": "user"}]}, "messages.0.content"),
        ({"messages": [{"role": "user", "content": [{"type": "text"}]}]}, "messages.0.content.0.text"),
        ({"messages": [{"role": "user", "content": ""}]}, "messages.0"),
        ({"system": [{"type": "image"}]}, "system.0"),
        ({"temperature": "hot"}, "temperature"),
        ({"clinvk": {"bogus": 1}}, "clinvk.bogus"),
        ({"clinvk": {"max_turns": 0}}, "clinvk.max_turns"),
        ({"clinvk": {"workdir": "relative/dir"}}, "clinvk.workdir"),
    ],
)
def test_bad_requests_are_400_naming_the_field(client, fields, named):
    """Missing, mistyped and impossible fields are a 400 whose message starts with the field."""
    sent = {k: v for k, v in body(**fields).items() if v is not None}
    error = assert_envelope(client.post(URL, json=sent), 400, "invalid_request_error")
    assert error["message"].startswith(f"{named}:"), error["message"]


def test_invalid_json_and_empty_body_are_400(client):
    """A body that is not a JSON object is a 400 in the envelope, never a 500."""
    for raw in (b"{not json", b"", b"[1, 2]"):
        assert_envelope(client.post(URL, content=raw, headers={"content-type": "application/json"}),
                        400, "invalid_request_error")


def test_unknown_and_sampling_fields_are_accepted(client, runner):
    """Sampling, tool and unknown fields are accepted without error (and not sent to the CLI)."""
    extras = {"temperature": 0.2, "top_p": 0.9, "top_k": 5, "stop_sequences": ["END"],
              "metadata": {"user_id": "u1"}, "tools": [{"name": "t", "input_schema": {}}],
              "tool_choice": {"type": "auto"}, "thinking": {"type": "enabled", "budget_tokens": 1024},
              "service_tier": "auto", "container": None, "brand_new_field": {"x": [1]}}
    r = client.post(URL, json=body(**extras),
                    headers={"anthropic-version": "2023-06-01", "anthropic-beta": "x-2025"})
    assert r.status_code == 200, r.text
    assert runner.runs[-1].prompt == "Hello!"


@pytest.mark.parametrize(
    ("model", "backend", "cli_model"),
    [
        ("claude", "claude", None),
        ("codex", "codex", None),
        ("gemini", "gemini", None),
        ("claude-sonnet-4-5", "claude", "claude-sonnet-4-5"),
        ("gpt-5", "codex", "gpt-5"),
        ("gemini/gemini-2.5-pro", "gemini", "gemini-2.5-pro"),
        ("something-else", "claude", "something-else"),
    ],
)
def test_model_names_route_to_backends(client, runner, model, backend, cli_model):
    """Model names follow the shared routing rule, and the answer names the model as asked."""
    r = client.post(URL, json=body(model=model))
    assert r.status_code == 200 and r.json()["model"] == model
    assert (runner.runs[-1].backend, runner.runs[-1].model) == (backend, cli_model)


def test_clinvk_options_reach_the_cli(client, runner, tmp_path):
    """The `clinvk` object (the SDK's extra_body) sets workdir, modes and max_turns."""
    options = {"workdir": str(tmp_path), "approval_mode": "auto", "sandbox_mode": "read-only",
               "max_turns": 3}
    assert client.post(URL, json=body(clinvk=options)).status_code == 200
    spec = runner.runs[-1]
    assert (spec.workdir, spec.approval_mode, spec.sandbox_mode, spec.max_turns) == (
        str(tmp_path.resolve()), "auto", "read-only", 3)


# -- sessions ----------------------------------------------------------------------------


def test_a_message_keeps_a_session_and_the_next_continues_it(client, runner, store):
    """Every answer names its session; continuing it sends only the new user turn and
    resumes the CLI's own session."""
    first = client.post(URL, json=body(messages=[{"role": "user", "content": "My name is Ada."}]))
    session_id = first.headers["x-clinvk-session-id"]
    assert session_id in store.sessions
    messages = [{"role": "user", "content": "My name is Ada."},
                {"role": "assistant", "content": "Hello Ada."},
                {"role": "user", "content": "What is my name?"}]
    second = client.post(URL, json=body(messages=messages, clinvk={"session_id": session_id}))
    assert second.status_code == 200, second.text
    assert second.headers["x-clinvk-session-id"] == session_id
    assert runner.runs[-1].prompt == "What is my name?"
    assert runner.runs[-1].resume_id == "claude-thread-1"  # the fake's thread of the first run
    assert store.sessions[session_id].turn_count == 2


def test_ephemeral_keeps_no_session(client, store):
    """clinvk.ephemeral answers without keeping a session (and without the header)."""
    r = client.post(URL, json=body(clinvk={"ephemeral": True}))
    assert r.status_code == 200 and "x-clinvk-session-id" not in r.headers
    assert store.sessions == {}


def test_continuing_needs_a_new_user_turn(client):
    """With a session, messages ending in an assistant turn are a 400 naming messages."""
    sid = client.post(URL, json=body()).headers["x-clinvk-session-id"]
    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]
    error = assert_envelope(
        client.post(URL, json=body(messages=messages, clinvk={"session_id": sid})), 400,
        "invalid_request_error")
    assert error["message"].startswith("messages:")


def test_unknown_session_is_404(client):
    """An unknown clinvk.session_id is a 404 not_found_error."""
    assert_envelope(client.post(URL, json=body(clinvk={"session_id": "nope"})), 404,
                    "not_found_error")


def test_session_of_another_backend_is_400_naming_model(client):
    """Continuing a claude session with a gemini model is a 400 that names `model`."""
    sid = client.post(URL, json=body()).headers["x-clinvk-session-id"]
    error = assert_envelope(
        client.post(URL, json=body(model="gemini", clinvk={"session_id": sid})), 400,
        "invalid_request_error")
    assert error["message"].startswith("model:")


# -- errors ------------------------------------------------------------------------------


def _raise(exc):
    async def run(spec, on_event=None):
        raise exc
    return run


@pytest.mark.parametrize(
    ("exc", "status", "kind"),
    [
        (BackendFailed("claude", "API Error: 500 injected"), 502, "api_error"),
        (BackendTimeout("claude", 5), 504, "timeout_error"),
        (BackendUnavailable("claude"), 503, "overloaded_error"),
        (Overloaded("too many runs", retry_after=2.4), 429, "rate_limit_error"),
        (BackendLimited("claude", "rate limited"), 429, "rate_limit_error"),
        (BackendOverloaded("claude", "overloaded"), 503, "overloaded_error"),
        (SessionBusy("s9"), 409, "invalid_request_error"),
        (SessionNotFound("s9"), 404, "not_found_error"),
        (WorkdirForbidden("workdir is blocked"), 403, "permission_error"),
    ],
)
def test_domain_errors_map_to_anthropic_statuses_and_types(client, runner, exc, status, kind):
    """Every domain error has its status and Anthropic error type, with the domain's message."""
    runner.run = _raise(exc)
    error = assert_envelope(client.post(URL, json=body()), status, kind)
    assert error["message"] == exc.message


def test_retry_hints(client, runner):
    """Overloaded carries Retry-After; a timeout and a missing CLI tell the SDK not to retry."""
    runner.run = _raise(Overloaded("busy", retry_after=2.4))
    assert client.post(URL, json=body()).headers["retry-after"] == "3"  # never too early
    runner.run = _raise(BackendLimited("claude", "rate limited", retry_after=20))
    r = client.post(URL, json=body())
    assert (r.status_code, r.headers["retry-after"]) == (429, "20")
    assert "x-should-retry" not in r.headers
    runner.run = _raise(BackendLimited("claude", "usage limit", kind="usage", retry_after=7200))
    r = client.post(URL, json=body())
    assert (r.headers["retry-after"], r.headers["x-should-retry"]) == ("7200", "false")
    runner.run = _raise(BackendTimeout("claude", 5))
    assert client.post(URL, json=body()).headers["x-should-retry"] == "false"


def test_failure_keeps_the_cli_message_and_session_header(client, runner):
    """A failing CLI is a 502 api_error carrying its own words and the session id."""
    runner.fail = "API Error: 500 injected 500"
    r = client.post(URL, json=body())
    assert "injected 500" in assert_envelope(r, 502, "api_error")["message"]
    assert r.headers["x-clinvk-session-id"]


def test_unavailable_backend_is_503_overloaded(client, runner):
    """A backend whose CLI is not installed is a 503 overloaded_error."""
    runner.unavailable.add("gemini")
    assert_envelope(client.post(URL, json=body(model="gemini")), 503, "overloaded_error")


def test_blocked_workdir_is_403_permission_error(client):
    """A workdir inside a blocked prefix is a 403 permission_error."""
    assert_envelope(client.post(URL, json=body(clinvk={"workdir": "/etc"})), 403,
                    "permission_error")


def test_unknown_path_and_wrong_method_use_the_envelope(client):
    """Unknown paths are a 404 not_found_error and wrong methods a 405, both in the envelope."""
    assert_envelope(client.get("/anthropic/v1/complete"), 404, "not_found_error")
    assert_envelope(client.get(URL), 405, "invalid_request_error")


def test_body_over_the_limit_is_413(tmp_path):
    """A body larger than max_request_body_bytes is a 413 request_too_large."""
    config = Config(server=ServerConfig(default_workdir=str(tmp_path), max_request_body_bytes=200))
    services = bootstrap(config, runner=FakeBackendRunner(), store=FakeSessionStore(),
                         clock=FakeClock(), ids=FakeIds())
    with TestClient(create_app(services)) as c:
        big = body(messages=[{"role": "user", "content": "x" * 500}])
        assert_envelope(c.post(URL, json=big), 413, "request_too_large")
        assert c.post(URL, json=body()).status_code == 200


# -- streams -----------------------------------------------------------------------------


def stream(client, **fields):
    with client.stream("POST", URL, json=body(stream=True, **fields)) as r:
        return r, r.read().decode()


def test_stream_events_come_in_anthropics_order(client):
    """A stream is message_start, content_block_start, one text_delta per CLI delta,
    content_block_stop, message_delta with stop reason and usage, message_stop."""
    r, text = stream(client)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    assert r.headers["x-clinvk-session-id"]
    events = sse_events(text)
    names = [name for name, _ in events]
    assert names == ["message_start", "content_block_start", "content_block_delta",
                     "content_block_delta", "content_block_delta", "content_block_stop",
                     "message_delta", "message_stop"]
    assert all(data["type"] == name for name, data in events)
    start = events[0][1]["message"]
    assert start["id"].startswith("msg_") and start["model"] == "claude" and start["content"] == []
    assert [d["delta"]["text"] for n, d in events if n == "content_block_delta"] == [
        "hello", " from", " fake"]
    delta = events[-2][1]
    assert delta["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert delta["usage"] == {"input_tokens": 3, "output_tokens": 3}


def test_quiet_cli_gets_ping_events(services, runner):
    """While the CLI is silent longer than heartbeat_secs, `ping` events keep the stream alive."""
    app = AppSpy(create_app(services))
    runner.hold = app.when_sent(b"event: ping")  # the CLI says nothing until a ping went out
    with TestClient(app) as client:
        _, text = stream(client)
    events = sse_events(text)
    assert ("ping", {"type": "ping"}) in events
    names = [n for n, _ in events]
    assert names.index("ping") < names.index("content_block_delta")
    assert [n for n, _ in events if n != "ping"][-1] == "message_stop"


def test_failure_after_start_is_an_error_event(client, runner):
    """A CLI failure after the stream started ends it with an `error` event, no message_stop."""
    runner.fail = "API Error: 500 injected 500"
    r, text = stream(client)
    assert r.status_code == 200
    name, data = sse_events(text)[-1]
    assert name == "error" and data["type"] == "error"
    assert data["error"]["type"] == "api_error" and "injected 500" in data["error"]["message"]
    assert "message_stop" not in text


def test_failure_before_start_is_an_ordinary_error_response(client, runner):
    """A refusal before the CLI started (here: CLI missing) is a plain 503 in the envelope."""
    runner.unavailable.add("claude")
    with client.stream("POST", URL, json=body(stream=True)) as r:
        r.read()
        assert_envelope(r, 503, "overloaded_error")


def test_continued_stream_sends_the_session_header(client, runner):
    """A continued session's stream names the session in X-Clinvk-Session-Id."""
    sid = client.post(URL, json=body()).headers["x-clinvk-session-id"]
    r, text = stream(client, clinvk={"session_id": sid})
    assert r.headers["x-clinvk-session-id"] == sid and "message_stop" in text


# -- models ------------------------------------------------------------------------------


def test_models_list_has_anthropics_shape(client):
    """GET /models lists every backend as Anthropic model objects with paging fields."""
    listing = client.get("/anthropic/v1/models").json()
    assert [m["id"] for m in listing["data"]] == ["claude", "codex", "gemini"]
    assert all(m["type"] == "model" and m["display_name"] and m["created_at"]
               for m in listing["data"])
    assert (listing["has_more"], listing["first_id"], listing["last_id"]) == (False, "claude", "gemini")


def test_models_list_pages(client):
    """limit and after_id page through the list; a bad limit is a 400."""
    page = client.get("/anthropic/v1/models", params={"limit": 1, "after_id": "claude"}).json()
    assert [m["id"] for m in page["data"]] == ["codex"] and page["has_more"] is True
    for bad in ("x", "²", "0", "1001"):  # "²".isdigit() but is no integer
        assert_envelope(client.get("/anthropic/v1/models", params={"limit": bad}), 400,
                        "invalid_request_error")


def test_models_include_aliases_and_retrieve_names_the_backend(tmp_path):
    """Aliases are listed; retrieving any routable name says which backend serves it."""
    config = Config(server=ServerConfig(default_workdir=str(tmp_path)),
                    model_aliases={"fast": "gemini/gemini-2.5-flash"})
    services = bootstrap(config, runner=FakeBackendRunner(), store=FakeSessionStore(),
                         clock=FakeClock(), ids=FakeIds())
    with TestClient(create_app(services)) as c:
        assert "fast" in [m["id"] for m in c.get("/anthropic/v1/models").json()["data"]]
        assert c.get("/anthropic/v1/models/fast").json()["id"] == "fast"
        found = c.get("/anthropic/v1/v1/models/gpt-5").json()
        assert found["type"] == "model" and "codex" in found["display_name"]
