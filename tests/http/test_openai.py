"""The OpenAI-compatible dialect, in-process on fakes."""

from __future__ import annotations

import json

import msgspec
import pytest
from starlette.testclient import TestClient

from clinvk.adapters.http.app import create_app
from clinvk.domain import events as ev
from clinvk.domain.chat import Turn, render_conversation
from clinvk.domain.errors import BackendLimited, BackendTimeout, Overloaded
from clinvk.domain.models import PromptResult, TokenUsage
from clinvk.entrypoints.bootstrap import bootstrap
from tests.fakes import AppSpy, FakeClock, FakeIds

URL = "/openai/v1/chat/completions"


def chat(client, *, messages=None, **body):
    body.setdefault("model", "claude")
    body["messages"] = messages or [{"role": "user", "content": "hi"}]
    return client.post(URL, json=body)


def sse_events(text: str) -> list[str]:
    """The data payloads of an SSE body, checking that every event is `data: ...` framed."""
    events = []
    for block in text.split("\n\n"):
        if not block or block.startswith(":"):
            continue
        assert block.startswith("data: ") and "\n" not in block, block
        events.append(block[len("data: "):])
    assert text.endswith("\n\n")
    return events


def stream(client, **body) -> tuple[object, list]:
    body["stream"] = True
    r = chat(client, **body)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/event-stream")
    events = sse_events(r.text)
    return r, [e if e == "[DONE]" else json.loads(e) for e in events]


@pytest.fixture
def make_client(config, runner, store):
    """A client of an app built on a changed config (same fakes)."""
    clients = []

    def make(**changes) -> TestClient:
        server = msgspec.structs.replace(config.server, **changes.pop("server", {}))
        cfg = msgspec.structs.replace(config, server=server, **changes)
        services = bootstrap(cfg, runner=runner, store=store, clock=FakeClock(), ids=FakeIds())
        c = TestClient(create_app(services))
        clients.append(c.__enter__())
        return c

    yield make
    for c in clients:
        c.__exit__(None, None, None)


# -- models ------------------------------------------------------------------------------


def test_models_lists_each_backend_and_alias(make_client):
    """GET /models lists every backend with its maker and every configured alias."""
    client = make_client(model_aliases={"fast": "gemini/gemini-2.5-flash", "gpt-4o": "codex"})
    body = client.get("/openai/v1/models").json()
    assert body["object"] == "list"
    owners = {m["id"]: m["owned_by"] for m in body["data"]}
    assert owners == {
        "claude": "anthropic", "codex": "openai", "gemini": "google",
        "fast": "google", "gpt-4o": "openai",
    }
    assert all(m["object"] == "model" and isinstance(m["created"], int) for m in body["data"])


def test_model_retrieve_and_404_envelope(make_client):
    """GET /models/{id} returns one model (ids may hold a slash); an unknown id is a 404
    envelope."""
    client = make_client(model_aliases={"team/default": "claude"})
    assert client.get("/openai/v1/models/codex").json()["owned_by"] == "openai"
    assert client.get("/openai/v1/models/team/default").json()["id"] == "team/default"
    r = client.get("/openai/v1/models/gpt-99")
    assert r.status_code == 404
    assert r.json() == {"error": {
        "message": "The model 'gpt-99' does not exist", "type": "invalid_request_error",
        "param": "model", "code": "model_not_found",
    }}


# -- non-stream completions --------------------------------------------------------------


def test_completion_shape_usage_and_session_header(client, runner, store):
    """A completion carries id, created, the requested model, one stop choice, real usage and
    the session header."""
    runner.usage = TokenUsage(
        input_tokens=40, output_tokens=9, cached_tokens=30, reasoning_tokens=2
    )
    r = chat(client, model="claude-sonnet-4-5")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["id"].startswith("chatcmpl-") and body["object"] == "chat.completion"
    assert isinstance(body["created"], int) and body["model"] == "claude-sonnet-4-5"
    assert body["choices"] == [{
        "index": 0, "message": {"role": "assistant", "content": "hello from fake", "refusal": None},
        "logprobs": None, "finish_reason": "stop",
    }]
    assert body["usage"] == {
        "prompt_tokens": 40, "completion_tokens": 9, "total_tokens": 49,
        "prompt_tokens_details": {"cached_tokens": 30},
        "completion_tokens_details": {"reasoning_tokens": 2},
    }
    sid = r.headers["x-clinvk-session-id"]
    assert store.sessions[sid].backend == "claude"


@pytest.mark.parametrize(
    ("model", "backend", "cli_model"),
    [
        ("claude", "claude", None),
        ("codex", "codex", None),
        ("gemini", "gemini", None),
        ("claude-opus-4-1", "claude", "claude-opus-4-1"),
        ("gpt-5", "codex", "gpt-5"),
        ("gemini-2.5-pro", "gemini", "gemini-2.5-pro"),
        ("codex/o3", "codex", "o3"),
        ("gemini/my-tuned", "gemini", "my-tuned"),
        ("something-else", "claude", "something-else"),
    ],
)
def test_model_routes_to_backend(client, runner, model, backend, cli_model):
    """The model name picks the backend; a bare backend name keeps its configured model."""
    assert chat(client, model=model).status_code == 200
    assert (runner.runs[-1].backend, runner.runs[-1].model) == (backend, cli_model)


def test_system_and_developer_become_the_system_prompt(client, runner):
    """System and developer messages, in order, form the system prompt; the rest is the
    rendered conversation."""
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": "4"},
        {"role": "developer", "content": [{"type": "text", "text": "Answer in French."}]},
        {"role": "user", "content": "And 3+3?"},
    ]
    assert chat(client, messages=messages).status_code == 200
    spec = runner.runs[-1]
    assert spec.system_prompt == "Be brief.\n\nAnswer in French."
    assert spec.prompt == render_conversation([
        Turn(role="user", text="What is 2+2?"),
        Turn(role="assistant", text="4"),
        Turn(role="user", text="And 3+3?"),
    ])


def test_a_lone_user_message_is_sent_verbatim(client, runner):
    """A single user message reaches the CLI exactly as written."""
    text = "-rf --help\n  \"quoted\" {json}"
    assert chat(client, messages=[{"role": "user", "content": text}]).status_code == 200
    assert runner.runs[-1].prompt == text and runner.runs[-1].system_prompt is None


def test_text_parts_are_joined_and_tool_turns_carried(client, runner):
    """Text parts of one message are joined by newlines; tool calls (current and
    deprecated forms) and tool results are carried as readable text turns."""
    messages = [
        {"role": "user", "content": [{"type": "text", "text": "Read this:"},
                                     {"type": "text", "text": "line two"}]},
        {"role": "assistant", "content": "Looking.", "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "ls", "arguments": "{}"}},
            {"id": "c2", "type": "custom", "custom": {"name": "grep", "input": "TODO"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "a.txt"},
        {"role": "tool", "tool_call_id": "c2", "content": [{"type": "text", "text": "none"}]},
        {"role": "assistant", "content": None,
         "function_call": {"name": "wc", "arguments": '{"f":"a.txt"}'}},
        {"role": "function", "name": "wc", "content": "3"},
        {"role": "user", "content": "Which files?"},
    ]
    assert chat(client, messages=messages).status_code == 200
    assert runner.runs[-1].prompt == render_conversation([
        Turn(role="user", text="Read this:\nline two"),
        Turn(role="assistant", text="Looking.\nTool call ls (id c1) with input: {}\n"
                                    "Tool call grep (id c2) with input: TODO"),
        Turn(role="tool", text="Tool result for c1: a.txt"),
        Turn(role="tool", text="Tool result for c2: none"),
        Turn(role="assistant", text='Tool call wc with input: {"f":"a.txt"}'),
        Turn(role="tool", text="Tool result for wc: 3"),
        Turn(role="user", text="Which files?"),
    ])


@pytest.mark.parametrize(
    ("part", "kind"),
    [
        ({"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}, "audio"),
        ({"type": "file", "file": {"file_id": "file-1"}}, "file"),
    ],
)
def test_non_text_parts_are_400_naming_the_part(client, runner, part, kind):
    """An audio or (uploaded) file part is refused with a 400 whose param names the part
    (images are carried: tests/http/test_images.py)."""
    messages = [
        {"role": "system", "content": "x"},
        {"role": "user", "content": "first"},
        {"role": "user", "content": [{"type": "text", "text": "look"}, part]},
    ]
    r = chat(client, messages=messages)
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == "messages[2].content[1]"
    assert kind in error["message"] and "text" in error["message"]
    assert runner.runs == []


def test_unknown_fields_and_sampling_options_are_accepted(client):
    """Fields clinvk cannot honour (sampling, tools, user, unknown extras) do not fail a request."""
    r = chat(
        client, temperature=0.2, top_p=0.9, seed=1, stop=["x"], presence_penalty=0,
        frequency_penalty=0, logit_bias={"1": 2}, user="u1", tools=[{"type": "function",
        "function": {"name": "f", "parameters": {}}}], tool_choice="auto",
        response_format={"type": "text"}, n=1, store=False, reasoning_effort="low",
        some_future_field={"a": [1]},
    )
    assert r.status_code == 200, r.text


@pytest.mark.parametrize(
    ("fields", "expected"),
    [({"max_tokens": 50}, 50), ({"max_completion_tokens": 70}, 70),
     ({"max_tokens": 50, "max_completion_tokens": 70}, 70), ({}, None)],
)
def test_token_limit_reaches_the_cli(client, runner, fields, expected):
    """max_completion_tokens (or the older max_tokens) becomes the run's token limit."""
    assert chat(client, **fields).status_code == 200
    assert runner.runs[-1].max_tokens == expected


def test_clinvk_options_ride_in_the_body(client, runner, store, tmp_path):
    """The `clinvk` object sets workdir, approval and sandbox modes and max turns; metadata
    lands on the session."""
    work = tmp_path / "proj"
    work.mkdir()
    r = chat(client, metadata={"ticket": "T-1"}, clinvk={
        "workdir": str(work), "approval_mode": "auto", "sandbox_mode": "read-only", "max_turns": 3,
    })
    assert r.status_code == 200, r.text
    spec = runner.runs[-1]
    assert (spec.workdir, spec.approval_mode, spec.sandbox_mode, spec.max_turns) == (
        str(work), "auto", "read-only", 3,
    )
    assert store.sessions[r.headers["x-clinvk-session-id"]].metadata == {"ticket": "T-1"}


def test_ephemeral_keeps_no_session(client, runner, store):
    """With clinvk.ephemeral no session is kept and no session header is sent."""
    r = chat(client, clinvk={"ephemeral": True})
    assert r.status_code == 200
    assert "x-clinvk-session-id" not in r.headers
    assert store.sessions == {} and runner.runs[-1].ephemeral


def test_session_continues_with_only_the_new_turns(client, runner):
    """With clinvk.session_id only the messages after the last assistant reply are sent and
    the CLI resumes its own session."""
    first = chat(client, model="codex", messages=[{"role": "user", "content": "My name is Zed."}])
    sid = first.headers["x-clinvk-session-id"]
    history = [
        {"role": "system", "content": "Be kind."},
        {"role": "user", "content": "My name is Zed."},
        {"role": "assistant", "content": first.json()["choices"][0]["message"]["content"]},
        {"role": "user", "content": "What is my name?"},
    ]
    second = chat(client, model="codex", messages=history, clinvk={"session_id": sid})
    assert second.status_code == 200, second.text
    assert second.headers["x-clinvk-session-id"] == sid
    spec = runner.runs[-1]
    assert spec.prompt == "What is my name?" and spec.system_prompt == "Be kind."
    assert spec.resume_id == "codex-thread-1"


def test_session_with_no_new_user_turn_is_400(client):
    """Continuing a session with messages that end in an assistant reply is a 400 on messages."""
    sid = chat(client).headers["x-clinvk-session-id"]
    messages = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]
    r = chat(client, messages=messages, clinvk={"session_id": sid})
    assert r.status_code == 400 and r.json()["error"]["param"] == "messages"


def test_session_errors_map_to_openai_statuses(client):
    """An unknown session is a 404 and a session of another backend a 400 naming model."""
    r = chat(client, clinvk={"session_id": "missing"})
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "session_not_found"
    sid = chat(client, model="claude").headers["x-clinvk-session-id"]
    r = chat(client, model="gemini", clinvk={"session_id": sid})
    assert r.status_code == 400 and r.json()["error"]["param"] == "model"


# -- errors ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "param"),
    [
        (b"", None),
        (b"{not json", None),
        (b"[]", None),
        (b'{"model": "claude"}', "messages"),
        (b'{"messages": [{"role": "user", "content": "x"}]}', "model"),
        (b'{"model": "claude", "messages": []}', "messages"),
        (b'{"model": 3, "messages": [{"role": "user", "content": "x"}]}', "model"),
        (b'{"model": "gpt\\u0000", "messages": [{"role": "user", "content": "x"}]}', "model"),
        (b'{"model": "claude", "messages": [{"role": "robot", "content": "x"}]}',
         "messages[0].role"),
        (b'{"model": "claude", "messages": [{"content": "x"}]}', "messages[0].role"),
        (b'{"model": "claude", "messages": [{"role": "user"}]}', "messages[0].content"),
        (b'{"model": "claude", "messages": [{"role": "user", "content": [{"type": "video"}]}]}',
         "messages[0].content[0].type"),
        (b'{"model": "claude", "messages": [{"role": "user", "content": "x"}], "n": 2}', "n"),
        (b'{"model": "claude", "messages": [{"role": "user", "content": "x"}], "max_tokens": 0}',
         "max_tokens"),
        (b'{"model": "claude", "messages": [{"role": "user", "content": "  "}]}', "messages"),
        (b'{"model": "claude", "messages": [{"role": "user", "content": "x"}], '
         b'"clinvk": {"approval_mode": "yolo"}}', "clinvk.approval_mode"),
        (b'{"model": "claude", "messages": [{"role": "user", "content": "x"}], '
         b'"clinvk": {"workdir": "relative/dir"}}', "clinvk.workdir"),
        (b'{"model": "claude", "messages": [{"role": "user", "content": "x"}], '
         b'"clinvk": {"workdir": "/tmp/\\u0000"}}', "clinvk.workdir"),
        (b'{"model": "claude", "messages": [{"role": "user", "content": "x"}], '
         b'"clinvk": {"sesion_id": "typo"}}', "clinvk.sesion_id"),
    ],
)
def test_bad_requests_are_400_in_the_envelope(client, runner, content, param):
    """Malformed bodies, missing or mistyped fields, unknown roles and n > 1 are 400
    invalid_request_error naming the param."""
    r = client.post(URL, content=content, headers={"content-type": "application/json"})
    assert r.status_code == 400, r.text
    assert r.headers["content-type"] == "application/json"
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error" and error["message"]
    assert error["param"] == param
    assert runner.runs == []


def test_forbidden_workdir_is_403(client):
    """A workdir inside a blocked prefix is a 403 permission_error."""
    r = chat(client, clinvk={"workdir": "/etc"})
    assert r.status_code == 403
    assert r.json()["error"]["type"] == "permission_error"


def test_body_over_the_limit_is_413(make_client, runner):
    """A body larger than max_request_body_bytes is a 413 in the envelope and runs nothing."""
    client = make_client(server={"max_request_body_bytes": 200})
    r = chat(client, messages=[{"role": "user", "content": "x" * 300}])
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "request_too_large"
    assert runner.runs == []


def test_backend_failure_is_502_with_the_cli_message(client, runner):
    """A failing CLI is a 502 server_error carrying the CLI's message and the session header."""
    runner.fail = "API Error: 500 injected"
    r = chat(client)
    assert r.status_code == 502
    assert r.json()["error"] == {
        "message": "API Error: 500 injected", "type": "server_error", "param": None,
        "code": "backend_failed",
    }
    assert r.headers["x-clinvk-session-id"]


def test_unavailable_backend_is_503_and_not_retried(client, runner):
    """A backend whose CLI is missing is a 503 that tells SDKs not to retry."""
    runner.unavailable.add("gemini")
    r = chat(client, model="gemini")
    assert r.status_code == 503
    assert r.json()["error"]["code"] == "backend_unavailable"
    assert r.headers["x-should-retry"] == "false"


def test_timeout_is_504(client, runner, monkeypatch):
    """A run that hits its deadline is a 504 that tells SDKs not to retry."""

    async def late(spec, on_event=None):
        raise BackendTimeout(spec.backend, 12)

    monkeypatch.setattr(runner, "run", late)
    r = chat(client)
    assert r.status_code == 504
    assert r.json()["error"]["code"] == "backend_timeout"
    assert r.headers["x-should-retry"] == "false"


def test_overload_is_429_with_retry_after(client, services, monkeypatch):
    """Admission control refusing a run is a 429 rate_limit_error with Retry-After."""

    async def refuse(request, on_event=None):
        raise Overloaded("too many runs", retry_after=2.4)

    monkeypatch.setattr(services.prompt, "run", refuse)
    r = chat(client)
    assert r.status_code == 429 and r.headers["retry-after"] == "3"
    assert r.json()["error"]["type"] == "rate_limit_error"


def test_unexpected_error_is_a_bare_500_envelope(services, monkeypatch):
    """An unexpected exception is a 500 in the envelope that never echoes its text."""

    async def broken(request, on_event=None):
        raise RuntimeError("secret /home/me/.token")

    monkeypatch.setattr(services.prompt, "run", broken)
    with TestClient(create_app(services), raise_server_exceptions=False) as c:
        r = chat(c)
    assert r.status_code == 500
    assert "secret" not in r.text
    assert r.json()["error"]["type"] == "server_error"


def test_unexpected_error_mid_stream_is_a_bare_error_chunk(services, monkeypatch):
    """An unexpected exception after a stream started ends it with a generic error chunk."""

    async def broken(request, on_event=None):
        await on_event(ev.Init(session_id="s1"))
        await on_event(ev.TextDelta(text="partial"))
        raise RuntimeError("secret /home/me/.token")

    monkeypatch.setattr(services.prompt, "run", broken)
    with TestClient(create_app(services), raise_server_exceptions=False) as c:
        r = chat(c, stream=True)
    assert r.status_code == 200 and "secret" not in r.text
    events = [json.loads(e) for e in sse_events(r.text)]
    assert events[0]["choices"][0]["delta"]["role"] == "assistant"
    assert events[1]["choices"][0]["delta"]["content"] == "partial"
    assert events[-1]["error"]["code"] == "internal_error"


def test_failure_before_any_text_is_an_ordinary_error_response(services, monkeypatch):
    """A streamed run that fails after the CLI started but before any text (a limit, an
    API error) has not started the stream: the client gets the error's own status and
    headers (here a 429 with Retry-After), which SDKs know how to handle."""

    async def limited(request, on_event=None):
        await on_event(ev.Init(session_id="s1"))
        raise BackendLimited("claude", "rate limit", kind="rate", retry_after=7)

    monkeypatch.setattr(services.prompt, "run", limited)
    with TestClient(create_app(services)) as c:
        r = chat(c, stream=True)
    assert r.status_code == 429 and r.headers["retry-after"] == "7"
    assert r.json()["error"]["code"] == "backend_rate_limited"


def test_unknown_route_and_method_are_enveloped(client):
    """Unknown paths are 404 and wrong methods 405, both in OpenAI's envelope."""
    r = client.post("/openai/v1/completions", json={})
    assert r.status_code == 404
    assert r.json()["error"]["message"] == "Invalid URL (POST /openai/v1/completions)"
    r = client.get(URL)
    assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"


def test_limit_stop_is_finish_reason_length(client, services, monkeypatch):
    """A run cut short by max_tokens or max_turns ends with finish_reason length."""

    async def limited(request, on_event=None):
        return PromptResult(session_id="s9", backend="claude", exit_code=0, duration_ms=1,
                            output="partial", token_usage=TokenUsage(), stop_reason="max_turns")

    monkeypatch.setattr(services.prompt, "run", limited)
    assert chat(client).json()["choices"][0]["finish_reason"] == "length"
    _, events = stream(client)
    assert [e["choices"][0]["finish_reason"] for e in events[:-1]] == [None, "length"]


# -- streaming ---------------------------------------------------------------------------


def test_stream_framing_role_deltas_finish_done(client, runner):
    """A stream is role chunk, one chunk per delta, a finish chunk, then [DONE], with the
    session header."""
    runner.reply = "one two three"
    r, events = stream(client, model="gpt-5")
    assert r.headers["x-clinvk-session-id"]
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert len({c["id"] for c in chunks}) == 1 and chunks[0]["id"].startswith("chatcmpl-")
    assert all(c["object"] == "chat.completion.chunk" and c["model"] == "gpt-5" for c in chunks)
    assert all("usage" not in c for c in chunks)
    deltas = [c["choices"][0]["delta"] for c in chunks]
    assert deltas[0] == {"role": "assistant", "content": ""}
    assert [d["content"] for d in deltas[1:-1]] == ["one", " two", " three"]
    assert deltas[-1] == {}
    assert [c["choices"][0]["finish_reason"] for c in chunks] == [None] * 4 + ["stop"]


def test_stream_include_usage_adds_a_usage_chunk(client, runner):
    """With stream_options.include_usage every chunk has usage null except a last one with
    empty choices and the real counts."""
    _, events = stream(client, stream_options={"include_usage": True})
    assert events[-1] == "[DONE]"
    *chunks, last = events[:-1]
    assert all(c["usage"] is None for c in chunks)
    assert last["choices"] == []
    assert last["usage"]["prompt_tokens"] == 3 and last["usage"]["total_tokens"] == 6


def test_stream_sends_heartbeat_comments_while_quiet(services, runner):
    """A quiet stream carries `: ping` comment lines at the heartbeat interval."""
    app = AppSpy(create_app(services))
    runner.reply = "slow words"
    runner.hold = app.when_sent(b": ping")  # the CLI says nothing until a ping went out
    with TestClient(app) as client:
        r = chat(client, stream=True)
    assert ": ping\n\n" in r.text
    assert r.text.index(": ping") < r.text.index('"content":"slow"')
    assert "".join(
        json.loads(e)["choices"][0]["delta"].get("content", "")
        for e in sse_events(r.text)[:-1]
    ) == "slow words"


def test_failure_after_start_is_an_error_chunk_without_done(client, runner):
    """A CLI failing mid-stream ends the stream with one OpenAI error chunk and no [DONE]."""
    runner.fail = "model API went away"
    _, events = stream(client)
    assert "[DONE]" not in events
    assert events[-1] == {"error": {
        "message": "model API went away", "type": "server_error", "param": None,
        "code": "backend_failed",
    }}
    assert all(c["choices"][0]["finish_reason"] is None for c in events[:-1])


def test_failure_before_start_is_an_ordinary_error_response(client, runner):
    """A stream the service refuses up front is an ordinary JSON error with its status."""
    runner.unavailable.add("codex")
    r = chat(client, model="codex", stream=True)
    assert r.status_code == 503
    assert r.headers["content-type"] == "application/json"
    assert r.json()["error"]["code"] == "backend_unavailable"


def test_stream_continues_a_session(client, runner):
    """A streamed turn with clinvk.session_id sends the session header and resumes the CLI."""
    sid = chat(client, model="gemini").headers["x-clinvk-session-id"]
    r, events = stream(client, model="gemini", clinvk={"session_id": sid},
                       messages=[{"role": "user", "content": "again"}])
    assert r.headers["x-clinvk-session-id"] == sid
    assert runner.runs[-1].resume_id == "gemini-thread-1" and runner.runs[-1].prompt == "again"
    assert events[-1] == "[DONE]"
