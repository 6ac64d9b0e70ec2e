"""Fallbacks and limits as each dialect shows them: who answered, and 429 for a limit."""

from __future__ import annotations

import json

import msgspec
import pytest
from starlette.testclient import TestClient

from clinvk.adapters.http.app import create_app
from clinvk.domain import events as ev
from clinvk.domain.config import BackendConfig
from clinvk.domain.errors import BackendLimited
from clinvk.entrypoints.bootstrap import bootstrap
from tests.fakes import FakeBackendRunner, FakeClock, FakeIds, FakeSessionStore


class LimitedClaude(FakeBackendRunner):
    """claude is always rate limited (before any text); the others answer."""

    async def run(self, spec, on_event=None):
        if spec.backend == "claude":
            self.runs.append(spec)
            if on_event is not None:
                await on_event(ev.Init(backend_session_id="c-1", model="claude-x"))
            raise BackendLimited("claude", "Claude AI usage limit reached", kind="usage",
                                 retry_after=3600)
        return await super().run(spec, on_event)


@pytest.fixture
def client(config):
    cfg = msgspec.structs.replace(config, backends={"claude": BackendConfig(fallback=["codex"])})
    runner = LimitedClaude()
    services = bootstrap(cfg, runner=runner, store=FakeSessionStore(), clock=FakeClock(),
                         ids=FakeIds())
    with TestClient(create_app(services)) as c:
        c.runner = runner  # type: ignore[attr-defined]
        yield c


def test_native_prompt_says_who_answered(client):
    """A limited claude falls back to codex: backend, header and session name codex."""
    r = client.post("/api/v1/prompt", json={"backend": "claude", "prompt": "hi"})
    assert r.status_code == 200, r.text
    assert (r.json()["backend"], r.headers["x-clinvk-backend"]) == ("codex", "codex")
    session = client.get(f"/api/v1/sessions/{r.json()['session_id']}").json()
    assert session["backend"] == "codex"


def test_native_stream_has_a_fallback_line(client):
    """The NDJSON stream carries a fallback line, then the next backend's lines."""
    with client.stream("POST", "/api/v1/prompt", json={
        "backend": "claude", "prompt": "hi", "output_format": "stream-json",
    }) as r:
        lines = [json.loads(line) for line in r.iter_lines() if line]
    types = [line["type"] for line in lines]
    assert types[:3] == ["init", "fallback", "init"] and types[-1] == "done"
    fallback = lines[1]["content"]
    assert (fallback["failed"], fallback["next"], fallback["code"]) == (
        "claude", "codex", "backend_rate_limited"
    )
    assert lines[0]["backend"] == "claude" and lines[2]["backend"] == "codex"
    assert lines[-1]["backend"] == "codex"


def test_request_fallback_list_replaces_the_config_one(client):
    """A request's `fallback` replaces `backends.<name>.fallback`; `[]` keeps the config."""
    r = client.post("/api/v1/prompt", json={"backend": "claude", "prompt": "hi",
                                            "fallback": ["gemini/gemini-2.5-pro"]})
    assert r.json()["backend"] == "gemini"
    assert client.runner.runs[-1].model == "gemini-2.5-pro"


def test_without_a_fallback_a_limit_is_429_with_retry_after(client):
    """A usage limit with no fallback left is a 429 with Retry-After, and the SDK is told
    not to retry a limit that is an hour away."""
    r = client.post("/openai/v1/chat/completions", json={
        "model": "claude-sonnet", "messages": [{"role": "user", "content": "hi"}],
        # the request's own list replaces the config's codex: only claude, nothing left
        "clinvk": {"fallback": ["claude"]},
    })
    assert r.status_code == 429, r.text
    assert r.headers["retry-after"] == "3600" and r.headers["x-should-retry"] == "false"
    assert r.json()["error"]["type"] == "rate_limit_error"
    r = client.post("/api/v1/prompt", json={"backend": "claude", "prompt": "x",
                                            "fallback": ["claude"]})
    assert r.status_code == 429
    assert r.json()["code"] == "backend_rate_limited" and r.json()["retry_after"] == 3600


def test_openai_and_anthropic_name_the_model_that_answered(client):
    """Non-stream OpenAI and Anthropic answers carry the answering model and backend."""
    r = client.post("/openai/v1/chat/completions", json={
        "model": "claude-sonnet", "messages": [{"role": "user", "content": "hi"}],
    })
    assert r.status_code == 200, r.text
    assert r.headers["x-clinvk-backend"] == "codex"
    assert r.json()["model"] == "fake-model"  # what codex reported, not claude-sonnet
    r = client.post("/anthropic/v1/messages", json={
        "model": "claude-sonnet", "max_tokens": 10,
        "messages": [{"role": "user", "content": "hi"}],
    })
    assert r.status_code == 200, r.text
    assert (r.headers["x-clinvk-backend"], r.json()["model"]) == ("codex", "fake-model")


def test_streams_name_the_backend_and_model_that_answered(client):
    """A fallback before the stream started shows in the streamed answers as in the
    non-stream ones: the X-Clinvk-Backend header and every chunk's (OpenAI) or the
    message_start's (Anthropic) model name codex's answer."""
    with client.stream("POST", "/openai/v1/chat/completions", json={
        "model": "claude-sonnet", "stream": True,
        "messages": [{"role": "user", "content": "hi"}],
    }) as r:
        assert r.headers["x-clinvk-backend"] == "codex"
        datas = [line[6:] for line in r.iter_lines() if line.startswith("data: ")]
    chunks = [json.loads(d) for d in datas if d != "[DONE]"]
    assert chunks and {c["model"] for c in chunks} == {"fake-model"}
    with client.stream("POST", "/anthropic/v1/messages", json={
        "model": "claude-sonnet", "max_tokens": 10, "stream": True,
        "messages": [{"role": "user", "content": "hi"}],
    }) as r:
        assert r.headers["x-clinvk-backend"] == "codex"
        datas = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: ")]
    start = next(d for d in datas if d["type"] == "message_start")
    assert start["message"]["model"] == "fake-model"


def test_responses_stream_names_the_backend_and_model_that_answered(client):
    """The Responses API stream likewise: header, and the model of response.created and
    response.completed, name codex's answer."""
    with client.stream("POST", "/openai/v1/responses", json={
        "model": "claude-sonnet", "input": "hi", "stream": True,
    }) as r:
        assert r.headers["x-clinvk-backend"] == "codex"
        datas = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: ")]
    kinds = [d["type"] for d in datas]
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    assert [d["sequence_number"] for d in datas] == list(range(len(datas)))
    assert datas[0]["response"]["model"] == datas[-1]["response"]["model"] == "fake-model"


def test_limit_before_any_text_is_429_on_every_streamed_dialect(client):
    """Without a fallback, a limit before any text is not a stream but an ordinary 429
    with Retry-After, in each dialect's envelope, streamed or not."""
    no_fallback = {"clinvk": {"fallback": ["claude"]}}  # replaces the config's codex
    requests = [
        ("/openai/v1/chat/completions", {"model": "claude", "stream": True,
                                         "messages": [{"role": "user", "content": "hi"}]}),
        ("/openai/v1/responses", {"model": "claude", "input": "hi", "stream": True}),
        ("/anthropic/v1/messages", {"model": "claude", "max_tokens": 5, "stream": True,
                                    "messages": [{"role": "user", "content": "hi"}]}),
    ]
    for path, body in requests:
        r = client.post(path, json={**body, **no_fallback})
        assert r.status_code == 429, (path, r.text)
        assert r.headers["retry-after"] == "3600"
        assert "error" in r.json()


def test_a_bad_fallback_entry_is_a_400_naming_it(client):
    """An unknown backend in `fallback` is refused before anything runs."""
    r = client.post("/api/v1/prompt", json={"backend": "codex", "prompt": "x",
                                            "fallback": ["codex", "mystery/model"]})
    assert r.status_code == 400 and r.json()["field"] == "fallback[1]"
    r = client.post("/openai/v1/chat/completions", json={
        "model": "gpt-5", "messages": [{"role": "user", "content": "hi"}],
        "clinvk": {"fallback": ["nope"]},
    })
    assert r.status_code == 400 and r.json()["error"]["param"] is not None
    assert client.runner.runs == []
