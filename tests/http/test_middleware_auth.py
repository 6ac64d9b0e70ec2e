"""API-key authentication, in every dialect's envelope."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from clinvk.adapters.http.app import create_app
from clinvk.adapters.http.middleware.auth import ApiKeyMiddleware

KEYS = ["key-one", "second-key-ä"]
PROMPT = {"backend": "claude", "prompt": "hi"}
CHAT = {"model": "claude", "messages": [{"role": "user", "content": "hi"}]}
MESSAGES = {"model": "claude", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def keyed(services):
    with TestClient(create_app(services, api_keys=KEYS)) as c:
        yield c


def test_without_keys_everything_is_open(client, runner):
    """With no keys configured no request needs one."""
    assert client.post("/api/v1/prompt", json=PROMPT).status_code == 200
    assert client.get("/openapi.json").status_code == 200
    assert len(runner.runs) == 1


@pytest.mark.parametrize("headers", [
    {"Authorization": "Bearer key-one"},
    {"authorization": "bearer key-one"},
    {"X-Api-Key": "key-one"},
    {"X-Api-Key": "second-key-ä".encode()},
])
def test_either_header_with_a_valid_key_passes(keyed, runner, headers):
    """A valid key in `Authorization: Bearer` or `X-Api-Key` is accepted."""
    r = keyed.post("/api/v1/prompt", json=PROMPT, headers=headers)
    assert r.status_code == 200, r.text
    assert len(runner.runs) == 1


@pytest.mark.parametrize("headers", [
    {},
    {"Authorization": "Bearer wrong"},
    {"Authorization": "Basic a2V5LW9uZQ=="},
    {"Authorization": "key-one"},
    {"X-Api-Key": "key-on"},
    {"X-Api-Key": "key-one-and-more"},
])
def test_missing_or_wrong_key_is_401_and_runs_nothing(keyed, runner, headers):
    """Without a valid key the native API answers 401 problem+json and no CLI runs."""
    r = keyed.post("/api/v1/prompt", json=PROMPT, headers=headers)
    assert r.status_code == 401
    assert r.headers["content-type"] == "application/problem+json"
    assert r.headers["www-authenticate"].startswith("Bearer")
    body = r.json()
    assert body["status"] == 401 and body["code"] == "invalid_api_key"
    assert "key-one" not in r.text
    assert runner.runs == []


def test_401_uses_the_openai_envelope_under_openai(keyed):
    """Under /openai/ the 401 is OpenAI's error object, as the OpenAI SDK expects."""
    r = keyed.post("/openai/v1/chat/completions", json=CHAT)
    assert r.status_code == 401
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "authentication_error" and error["code"] == "invalid_api_key"


def test_401_uses_the_anthropic_envelope_under_anthropic(keyed):
    """Under /anthropic/ the 401 is Anthropic's error envelope."""
    r = keyed.post("/anthropic/v1/messages", json=MESSAGES)
    assert r.status_code == 401
    assert r.json() == {
        "type": "error",
        "error": {"type": "authentication_error", "message": r.json()["error"]["message"]},
    }


def test_health_and_the_docs_page_need_no_key(keyed):
    """/health (probes) and the static /docs page are served without a key; the
    description itself is not."""
    assert keyed.get("/health").status_code == 200
    assert keyed.get("/docs").status_code == 200
    assert keyed.get("/docs/docs.js").status_code == 200
    assert keyed.get("/openapi.json").status_code == 401
    assert keyed.get("/openapi.json", headers={"X-Api-Key": "key-one"}).status_code == 200


def test_unknown_paths_need_a_key_too(keyed):
    """Even a 404 is not revealed without a key."""
    assert keyed.get("/nothing-here").status_code == 401
    assert keyed.get("/healthz").status_code == 401


def test_the_comparison_checks_every_key():
    """Each configured key is accepted and anything else refused, whatever its length."""
    auth = ApiKeyMiddleware(app=None, keys=KEYS)  # type: ignore[arg-type]
    assert all(auth.valid(k) for k in KEYS)
    assert not any(auth.valid(k) for k in ["", "key", "key-one ", "KEY-ONE", "x" * 10_000])


@pytest.mark.parametrize(("path", "dialect"), [
    ("/openai/v1/chat/completions", "openai"), ("/openai", "openai"),
    ("/anthropic/v1/v1/messages", "anthropic"), ("/openaix/v1", "native"),
    ("/api/v1/prompt", "native"), ("/metrics", "native"), ("/", "native"),
])
def test_the_envelope_is_chosen_by_path_prefix(path, dialect):
    """One rule picks the error envelope: /openai/ and /anthropic/ prefixes, else native."""
    from clinvk.adapters.http.middleware.envelope import dialect_of

    assert dialect_of(path) == dialect
