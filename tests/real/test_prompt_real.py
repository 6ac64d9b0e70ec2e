"""The native API through a real `clinvk serve`, the real CLIs and the model double."""

from __future__ import annotations

import json
import socket
import threading
import time

import httpx
import pytest

from tests.support.model_double import (
    assistant_texts,
    generation_requests,
    user_texts,
)
from tests.support.server import SETTLE_SECS, ClinvkServer

pytestmark = pytest.mark.real

BACKENDS = ["claude", "codex", "gemini"]


def _prompt(server, **body) -> httpx.Response:
    return httpx.post(server.url + "/api/v1/prompt", json=body, timeout=60)


def _last_generation(double) -> dict:
    calls = generation_requests(double.requests())
    assert calls, "the CLI never called the model double"
    return calls[-1]


@pytest.mark.parametrize("backend", BACKENDS)
def test_answer_and_usage_match_the_double(clinvk_server, model_double, backend):
    """Each backend's answer text and token counts are exactly what the double sent."""
    model_double.set(reply="alpha beta gamma delta", input_tokens=11)
    r = _prompt(clinvk_server, backend=backend, prompt="Say hi")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["output"] == "alpha beta gamma delta"
    assert body["token_usage"]["input_tokens"] == 11
    assert body["token_usage"]["output_tokens"] == 4
    assert body["exit_code"] == 0 and body["session_id"]
    assert "Say hi" in user_texts(_last_generation(model_double))


@pytest.mark.parametrize("backend", ["claude", "gemini"])
def test_ndjson_events_arrive_while_the_cli_streams(clinvk_server, model_double, backend):
    """Streamed text deltas reach the client while the model is still answering: the first
    ones arrive before the double has even sent the rest."""
    model_double.set(words=8)
    model_double.hold_after(3)  # w0 w1 w2, then nothing until this test has seen them
    released_by_test = False
    guard = threading.Timer(SETTLE_SECS, model_double.release)  # a hang guard only
    guard.start()
    lines = []
    try:
        with httpx.stream(
            "POST", clinvk_server.url + "/api/v1/prompt", timeout=60,
            json={"backend": backend, "prompt": "count", "output_format": "stream-json"},
        ) as r:
            assert r.status_code == 200
            assert r.headers["x-clinvk-session-id"]
            for line in r.iter_lines():
                if not line:
                    continue
                event = json.loads(line)
                lines.append(event)
                deltas = [e for e in lines if e["type"] == "delta"]
                if len(deltas) == 3 and not released_by_test:
                    released_by_test = guard.is_alive()
                    model_double.release()
    finally:
        guard.cancel()
    assert released_by_test, "three deltas should have arrived while the rest was held back"
    assert [e["type"] for e in lines][0] == "init" and lines[-1]["type"] == "done"
    deltas = [e for e in lines if e["type"] == "delta"]
    assert len(deltas) == 8
    text = "".join(e["content"]["text"] for e in deltas)
    assert text == "w0 w1 w2 w3 w4 w5 w6 w7"


def test_codex_streams_its_whole_message_as_one_event(clinvk_server, model_double):
    """Codex prints no token deltas; its whole message arrives as one message event."""
    with httpx.stream(
        "POST", clinvk_server.url + "/api/v1/prompt", timeout=60,
        json={"backend": "codex", "prompt": "hi", "output_format": "stream-json"},
    ) as r:
        events = [json.loads(line) for line in r.iter_lines() if line]
    messages = [e for e in events if e["type"] == "message"]
    assert [m["content"]["text"] for m in messages] == ["w0 w1 w2 w3 w4"]
    assert events[-1]["type"] == "done"


@pytest.mark.parametrize("backend", BACKENDS)
def test_resumed_session_carries_the_first_turn(clinvk_server, model_double, backend):
    """A second prompt with the session id resumes the CLI's session: the model sees turn 1."""
    model_double.set(reply="Hello Zed")
    first = _prompt(clinvk_server, backend=backend, prompt="My name is Zed. Remember it.")
    assert first.status_code == 200, first.text
    sid = first.json()["session_id"]
    model_double.set(reply="Your name is Zed")
    second = _prompt(clinvk_server, backend=backend, prompt="What is my name?", session_id=sid)
    assert second.status_code == 200, second.text
    assert second.json()["session_id"] == sid
    request = _last_generation(model_double)
    users = user_texts(request)
    assert any("My name is Zed. Remember it." in t for t in users)
    assert any("What is my name?" in t for t in users)
    assert any("Hello Zed" in t for t in assistant_texts(request))
    session = httpx.get(f"{clinvk_server.url}/api/v1/sessions/{sid}").json()
    assert session["turn_count"] == 2
    assert session["token_usage"]["output_tokens"] == 2 + 4


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("prompt", ["-x --help \"quoted\" 'single'\nsecond line", "p" * 300_000])
def test_prompts_arrive_verbatim(clinvk_server, model_double, backend, prompt):
    """A prompt starting with '-' (with quotes and newlines) and a 300 KB prompt reach the
    model exactly as sent."""
    r = _prompt(clinvk_server, backend=backend, prompt=prompt, ephemeral=True)
    assert r.status_code == 200, r.text[:2000]
    texts = user_texts(_last_generation(model_double))
    assert any(t == prompt or t.rstrip("\n") == prompt for t in texts), [t[:80] for t in texts]


@pytest.mark.parametrize("backend", BACKENDS)
def test_failing_model_api_is_502_with_the_cli_message(clinvk_server, model_double, backend):
    """When the model API fails, the answer is 502 with the CLI's own message and no CLI
    process is left."""
    model_double.set(fail_status=500)
    r = _prompt(clinvk_server, backend=backend, prompt="hi")
    assert r.status_code == 502, r.text
    problem = r.json()
    assert problem["code"] == "backend_failed"
    assert problem["detail"]
    if backend != "codex":  # codex replaces a 500's body with its own generic text
        assert "injected 500" in problem["detail"]
    assert clinvk_server.wait_no_cli() == []


#: request_timeout_secs of the server that tests the deadline itself.
SHORT_DEADLINE_SECS = 5


@pytest.fixture(scope="module")
def short_deadline_server(model_double, tmp_path_factory):
    """A `clinvk serve` like clinvk_server, but whose runs end after SHORT_DEADLINE_SECS."""
    server = ClinvkServer(model_double.url, tmp_path_factory.mktemp("short-deadline"),
                          request_timeout_secs=SHORT_DEADLINE_SECS).start()
    yield server
    server.stop()


@pytest.mark.parametrize("backend", BACKENDS)
def test_hung_model_api_is_504_at_the_deadline(short_deadline_server, model_double, backend):
    """When the model API never answers, the run ends with 504 at the deadline and its
    process group is gone."""
    model_double.set(hang=True)
    started = time.monotonic()
    r = _prompt(short_deadline_server, backend=backend, prompt="hi")
    elapsed = time.monotonic() - started
    assert r.status_code == 504, r.text
    assert r.json()["code"] == "backend_timeout"
    assert elapsed >= SHORT_DEADLINE_SECS  # not before the deadline (however long after)
    assert short_deadline_server.wait_no_cli() == []


@pytest.mark.parametrize("backend", BACKENDS)
def test_dropped_stream_kills_the_cli(clinvk_server, model_double, backend):
    """A client that drops an NDJSON stream mid-answer leaves no CLI process behind."""
    model_double.hold_after(1)  # the answer never ends by itself: only a kill ends the CLI
    with httpx.stream(
        "POST", clinvk_server.url + "/api/v1/prompt", timeout=60,
        json={"backend": backend, "prompt": "long", "output_format": "stream-json"},
    ) as r:
        for line in r.iter_lines():
            if line and json.loads(line)["type"] == "init":
                break
        assert clinvk_server.cli_pids(), "the CLI should be running mid-stream"
    assert clinvk_server.wait_no_cli() == []


def test_dropped_plain_request_kills_the_cli(clinvk_server, model_double):
    """A client that gives up on a non-streaming prompt leaves no CLI process behind."""
    model_double.hold_after(1)  # the answer never ends by itself: only a kill ends the CLI
    body = json.dumps({"backend": "claude", "prompt": "long"}).encode()
    with socket.create_connection(("127.0.0.1", clinvk_server.port)) as client:
        client.sendall(b"POST /api/v1/prompt HTTP/1.1\r\nHost: clinvk\r\n"
                       b"Content-Type: application/json\r\n"
                       b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        deadline = time.monotonic() + SETTLE_SECS  # a hang guard only
        while not generation_requests(model_double.requests()):
            assert time.monotonic() < deadline, "the CLI never called the model"
            time.sleep(0.05)
        assert clinvk_server.cli_pids(), "the CLI should be mid-answer"
    # The client has hung up without reading an answer.
    assert clinvk_server.wait_no_cli() == []


def test_backends_and_health_report_the_installed_clis(clinvk_server):
    """All three pinned CLIs are found, so health is ok."""
    backends = httpx.get(clinvk_server.url + "/api/v1/backends").json()["backends"]
    assert {b["name"]: b["available"] for b in backends} == dict.fromkeys(BACKENDS, True)
    assert httpx.get(clinvk_server.url + "/health").json()["status"] == "ok"
