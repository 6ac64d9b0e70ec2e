"""Retries and limits through a real `clinvk serve`, the real CLIs and the model double.

The server here runs the CLIs with their *own* retry defaults (claude 10 retries, codex's
provider defaults, gemini 10 attempts), unlike the session server whose settings turn
retries off; so a run that makes one model call proves clinvk's `max_retries` reached the
CLI. codex uses a custom provider from its own config.toml whose key variable is only in
the server's environment, as a user would set it up.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from tests.support.model_double import ModelDouble, generation_requests
from tests.support.server import ClinvkServer

pytestmark = pytest.mark.real

BACKENDS = ["claude", "codex", "gemini"]
API = {"claude": "anthropic", "codex": "openai", "gemini": "gemini"}
PROVIDER_KEY = "my-provider-key-value"


def _with_cli_defaults(server: ClinvkServer, double_url: str) -> None:
    """Rewrite the server's config so each CLI keeps its own retry defaults, and codex
    reads a custom provider from its config.toml (`env_key = "MY_PROVIDER_KEY"`)."""
    config = yaml.safe_load(server.config_path.read_text())
    claude, codex = config["backends"]["claude"], config["backends"]["codex"]
    del claude["env"]["CLAUDE_CODE_MAX_RETRIES"]
    (Path(codex["env"]["CODEX_HOME"]) / "config.toml").write_text(
        'model_provider = "x"\n\n[model_providers.x]\nname = "custom"\n'
        f'base_url = "{double_url}/v1"\nenv_key = "MY_PROVIDER_KEY"\nwire_api = "responses"\n'
    )
    # Keep only the flags that keep codex quiet; the provider comes from config.toml.
    codex["extra_flags"] = ["--disable", "plugins", "-c", "analytics.enabled=false"]
    gemini_home = Path(config["backends"]["gemini"]["env"]["GEMINI_CLI_HOME"])
    settings_file = gemini_home / ".gemini" / "settings.json"
    settings = json.loads(settings_file.read_text())
    del settings["general"]["maxAttempts"]
    settings_file.write_text(json.dumps(settings))
    server.config_path.write_text(yaml.safe_dump(config))


@pytest.fixture(scope="module")
def server(model_double: ModelDouble, tmp_path_factory) -> Iterator[ClinvkServer]:
    """`clinvk serve` with the CLIs' own retry defaults and codex on a custom provider."""
    with pytest.MonkeyPatch.context() as env:
        # Only the server has the provider's key; clinvk passes it on (cli_env: inherit).
        env.setenv("MY_PROVIDER_KEY", PROVIDER_KEY)
        server = ClinvkServer(model_double.url, tmp_path_factory.mktemp("retries"))
        _with_cli_defaults(server, model_double.url)
        server.start()
    yield server
    server.stop()


def _prompt(server: ClinvkServer, **body) -> httpx.Response:
    return httpx.post(server.url + "/api/v1/prompt", json=body, timeout=120)


def _stream(server: ClinvkServer, **body) -> list[dict]:
    body["output_format"] = "stream-json"
    with httpx.stream("POST", server.url + "/api/v1/prompt", json=body, timeout=120) as r:
        assert r.status_code == 200
        return [json.loads(line) for line in r.iter_lines() if line.strip()]


def _calls(double: ModelDouble, api: str | None = None) -> list[dict]:
    return [r for r in generation_requests(double.requests()) if api in (None, r["api"])]


def test_codex_with_a_custom_provider_answers(server, model_double):
    """codex configured the documented way (a provider in config.toml whose key variable
    is only in the server's environment) answers through clinvk, with that key."""
    model_double.set(reply="custom provider answer")
    r = _prompt(server, backend="codex", prompt="hi")
    assert r.status_code == 200, r.text
    assert r.json()["output"] == "custom provider answer"
    [call] = _calls(model_double, "openai")
    headers = {name.lower(): value for name, value in call["headers"].items()}
    assert headers["authorization"] == f"Bearer {PROVIDER_KEY}"
    assert server.wait_no_cli() == []


@pytest.mark.parametrize("backend", BACKENDS)
def test_max_retries_0_makes_a_failing_api_a_502_after_one_call(server, model_double, backend):
    """With `max_retries: 0` a model API that always answers 500 is a 502 (not a 503/429)
    naming the API status, after exactly one model call, although each CLI's own default
    would retry it many times."""
    model_double.set(fail_status=500)
    r = _prompt(server, backend=backend, prompt="hi", max_retries=0)
    assert r.status_code == 502, r.text
    assert r.json()["code"] == "backend_failed"
    assert len(_calls(model_double)) == 1
    assert server.wait_no_cli() == []


def test_retrying_gemini_streams_retry_lines_before_its_error(server, model_double):
    """gemini given `max_retries: 2` against a failing API makes three calls, and the
    native stream carries one `retry` line per retry (attempt, budget, status) before the
    error line; gemini prints those notices only on stderr."""
    model_double.set(fail_status=500)
    events = _stream(server, backend="gemini", prompt="hi", max_retries=2)
    kinds = [e["type"] for e in events if e["type"] != "heartbeat"]
    retries = [e["content"] for e in events if e["type"] == "retry"]
    assert [(r["attempt"], r["max_attempts"], r["status"]) for r in retries] == [
        (1, 3, 500), (2, 3, 500)]
    assert kinds[-1] == "error" and kinds.index("retry") < kinds.index("error")
    assert len(_calls(model_double, "gemini")) == 3
    assert server.wait_no_cli() == []


def test_codex_budget_of_two_is_three_calls_each_retry_visible(server, model_double):
    """codex given `max_retries: 2` against a failing API makes three calls in all (not
    the (n + 1)² its two nested budgets would allow), and the native stream carries one
    `retry` line per retry before the error line."""
    model_double.set(fail_status=500)
    events = _stream(server, backend="codex", prompt="hi", max_retries=2)
    kinds = [e["type"] for e in events if e["type"] != "heartbeat"]
    assert kinds.count("retry") == 2 and kinds[-1] == "error"
    assert kinds.index("retry") < kinds.index("error")
    assert len(_calls(model_double, "openai")) == 3
    assert server.wait_no_cli() == []


def test_rate_limited_claude_falls_back_to_codex(server, model_double):
    """claude refused with 429 (only the Anthropic API is limited) moves to codex: the
    client gets codex's answer and a `fallback` line saying why, and claude made one call."""
    model_double.set(fail_status=429, fail_apis=["anthropic"],
                     fail_headers={"retry-after": "30"})
    model_double.reply_for(openai="codex stepped in")
    events = _stream(server, backend="claude", prompt="hi", max_retries=0, fallback=["codex"])
    kinds = [e["type"] for e in events if e["type"] != "heartbeat"]
    fallback = next(e for e in events if e["type"] == "fallback")
    assert fallback["content"]["failed"] == "claude"
    assert fallback["content"]["next"] == "codex"
    assert fallback["content"]["code"] == "backend_rate_limited"
    text = "".join(e["content"]["text"] for e in events
                   if e["type"] in ("delta", "message") and e["backend"] == "codex")
    assert text == "codex stepped in"
    assert kinds[-1] == "done" and kinds.index("fallback") < kinds.index("done")
    assert len(_calls(model_double, "anthropic")) == 1
    assert server.wait_no_cli() == []


def test_limit_with_a_reset_time_answers_429_with_retry_after(server, model_double):
    """A 429 whose reset time the CLI prints (gemini relays the API's RetryInfo) is a 429
    with Retry-After, not a 502; without a fallback nothing else runs."""
    retry_info = {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "37s"}
    model_double.set(fail_status=429, fail_apis=["gemini"], fail_extra={"details": [retry_info]},
                     fail_headers={"retry-after": "37"})
    r = _prompt(server, backend="gemini", prompt="hi", max_retries=0)
    assert r.status_code == 429, r.text
    assert r.headers["Retry-After"] == "37"
    assert r.json()["code"] == "backend_rate_limited"
    assert [c["api"] for c in _calls(model_double)] == ["gemini"]
    assert server.wait_no_cli() == []


def test_usage_limit_says_when_it_resets_and_not_to_retry(server, model_double):
    """codex's usage limit ("try again at <time>") is a 429 with Retry-After up to that
    minute and `x-should-retry: false`; claude's plain 429 is a rate limit without one."""
    import time

    model_double.set(fail_status=429, fail_apis=["openai"], fail_error="usage_limit_reached",
                     fail_extra={"plan_type": "plus", "resets_at": int(time.time()) + 4000})
    r = _prompt(server, backend="codex", prompt="hi", max_retries=0)
    assert r.status_code == 429, r.text
    assert 3900 <= int(r.headers["Retry-After"]) <= 4000  # codex prints the minute only
    assert r.headers["x-should-retry"] == "false"
    model_double.set(fail_apis=["anthropic"], fail_error=None, fail_extra=None,
                     fail_headers={"retry-after": "30",
                                   "anthropic-ratelimit-requests-reset": "2030-01-01T00:00:00Z"})
    r = _prompt(server, backend="claude", prompt="hi", max_retries=0)
    assert r.status_code == 429, r.text
    assert "Retry-After" not in r.headers  # claude does not print the API's reset time
    assert server.wait_no_cli() == []
