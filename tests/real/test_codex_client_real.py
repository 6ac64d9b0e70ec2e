"""The real codex CLI as a *client* of clinvk: a custom model provider with
`wire_api = "responses"` and `base_url = <clinvk>/openai/v1`, while the CLIs behind clinvk
talk to the model double. A turn prints the double's answer (whichever backend answers),
`codex exec resume` carries the conversation, and the answer streams into codex's own
output (its app server's `item/agentMessage/delta` notifications, what its IDE and terminal
UIs draw). The client settings are the recipe in docs/openai.md ("codex as a client")."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import threading
from pathlib import Path

import pytest

from tests.support.clis import cli_path
from tests.support.images import png_b64, png_bytes
from tests.support.model_double import assistant_texts, generation_requests, user_texts

pytestmark = pytest.mark.real

#: Only a guard against a hung client; the runs take seconds.
GUARD_SECS = 240

BACKENDS = ["claude", "codex", "gemini"]
#: The first path segment of each backend CLI's model calls, as the double logs them.
API_OF = {"claude": "anthropic", "codex": "openai", "gemini": "gemini"}

#: $CODEX_HOME/config.toml, as docs/openai.md gives it (the model is set per test).
CONFIG = """\
model_provider = "clinvk"

[model_providers.clinvk]
name = "clinvk"
base_url = "{url}/openai/v1"
env_key = "CLINVK_API_KEY"
wire_api = "responses"
request_max_retries = 0
stream_max_retries = 0

[analytics]
enabled = false
"""


class CodexClient:
    """The pinned `codex` with a throwaway CODEX_HOME whose provider is clinvk."""

    def __init__(self, url: str, tmp: Path) -> None:
        self.home, self.cwd = tmp / "client-home", tmp / "client-work"
        (self.home / ".codex").mkdir(parents=True)
        self.cwd.mkdir()
        (self.home / ".codex" / "config.toml").write_text(CONFIG.format(url=url))
        self.env = {
            "PATH": os.environ["PATH"],
            "HOME": str(self.home),
            "CODEX_HOME": str(self.home / ".codex"),
            "TMPDIR": str(tmp),
            "CLINVK_API_KEY": "not-needed",  # clinvk's key when CLINVK_API_KEYS is set
        }

    def argv(self, *args: str) -> list[str]:
        return [str(cli_path("codex")), *args]

    def run(self, model: str, *args: str) -> subprocess.CompletedProcess[str]:
        """`codex exec` with the user's model."""
        return subprocess.run(
            self.argv("exec", "--skip-git-repo-check", "--disable", "plugins", "-m", model,
                      *args),
            check=False, env=self.env, cwd=self.cwd, capture_output=True, text=True,
            stdin=subprocess.DEVNULL, timeout=GUARD_SECS,
        )

    def exec(self, model: str, *args: str) -> str:
        """`codex exec` with the user's model; its stdout (it must succeed)."""
        done = self.run(model, *args)
        assert done.returncode == 0, (done.stdout, done.stderr[-2000:])
        return done.stdout


class AppServer:
    """`codex app-server` (JSON-RPC over stdio): the protocol codex's own UIs are built on."""

    def __init__(self, client: CodexClient, model: str) -> None:
        self.process = subprocess.Popen(
            client.argv("app-server", "--disable", "plugins", "-c", f'model="{model}"'),
            env=client.env, cwd=client.cwd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.ids = 0
        self.call("initialize", {"clientInfo": {"name": "clinvk-test", "title": None,
                                                "version": "0"}, "capabilities": None})
        self.send({"method": "initialized", "params": {}})
        started = self.call("thread/start", {"cwd": str(client.cwd)})
        self.thread_id = started["thread"]["id"]

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)

    def send(self, message: dict) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(message) + "\n")
        self.process.stdin.flush()

    def next(self) -> dict:
        """The next message codex writes (guarded against a hang)."""
        return json.loads(self.lines.get(timeout=GUARD_SECS))

    def call(self, method: str, params: dict) -> dict:
        self.ids += 1
        self.send({"id": self.ids, "method": method, "params": params})
        while True:
            message = self.next()
            if message.get("id") == self.ids:
                assert "error" not in message, message
                return message["result"]

    def start_turn(self, text: str) -> None:
        self.call("turn/start", {"threadId": self.thread_id,
                                 "input": [{"type": "text", "text": text, "text_elements": []}]})

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            self.process.wait(GUARD_SECS)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.reader.join(GUARD_SECS)
        assert self.process.stdout is not None
        self.process.stdout.close()


@pytest.fixture
def codex_client(clinvk_server, tmp_path: Path) -> CodexClient:
    return CodexClient(clinvk_server.url, tmp_path)


@pytest.fixture
def app_server(codex_client: CodexClient, request):
    server = AppServer(codex_client, request.param)
    yield server
    server.close()


def _calls_of(double, backend: str) -> list[dict]:
    return [c for c in generation_requests(double.requests()) if c["api"] == API_OF[backend]]


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_turn_prints_the_answer_of_the_backend_behind_clinvk(codex_client, model_double,
                                                               backend):
    """`codex exec hello` through clinvk prints what the backend's model answered, and that
    backend's CLI is the one that called the model with the user's words."""
    model_double.set(reply="alpha beta gamma")
    assert codex_client.exec(backend, "hello") == "alpha beta gamma\n"
    calls = _calls_of(model_double, backend)
    assert calls, f"the {backend} CLI never called the model double"
    assert any(t.rstrip().endswith("hello") for t in user_texts(calls[-1]))


def test_a_backend_failure_is_shown_by_codex_without_retrying_the_turn(codex_client,
                                                                        model_double):
    """A backend whose model call fails ends clinvk's stream with response.failed; codex
    (stream_max_retries = 0, as the recipe says) fails the turn with the backend's error
    and does not run it again."""
    model_double.set(fail_status=500, fail_message="the model is down")
    done = codex_client.run("claude", "--json", "hello")
    assert done.returncode == 1
    events = [json.loads(line) for line in done.stdout.splitlines()]
    failed = [e for e in events if e["type"] == "turn.failed"]
    assert len(failed) == 1 and "the model is down" in failed[0]["error"]["message"]
    assert not any("Reconnecting" in e.get("message", "") for e in events)
    assert len(_calls_of(model_double, "claude")) == 1


def test_with_api_keys_codex_sends_the_key_from_env_key(model_double, tmp_path):
    """On a server that checks API keys, the provider's `env_key` variable carries the key
    (as a Bearer token): the right one answers; a wrong one is a 401 that codex shows
    without retrying, and no CLI runs."""
    from tests.support.server import ClinvkServer

    server = ClinvkServer(model_double.url, tmp_path / "keyed-server",
                          env={"CLINVK_API_KEYS": "secret-1"}).start()
    try:
        client = CodexClient(server.url, tmp_path / "keyed-client")
        client.env["CLINVK_API_KEY"] = "secret-1"
        model_double.set(reply="let in")
        assert client.exec("gemini", "hello") == "let in\n"
        calls = len(generation_requests(model_double.requests()))
        client.env["CLINVK_API_KEY"] = "wrong"
        done = client.run("gemini", "--json", "hello")
        assert done.returncode == 1
        events = [json.loads(line) for line in done.stdout.splitlines()]
        failed = [e for e in events if e["type"] == "turn.failed"]
        assert len(failed) == 1 and "401" in failed[0]["error"]["message"]
        assert not any("Reconnecting" in e.get("message", "") for e in events)
        assert len(generation_requests(model_double.requests())) == calls
    finally:
        server.stop()


def _image_data(node) -> list[str]:
    """The base64 data of every image in a logged model call (Anthropic image blocks,
    Responses input_image data URLs, Gemini inlineData)."""
    if isinstance(node, list):
        return [d for item in node for d in _image_data(item)]
    if not isinstance(node, dict):
        return []
    if node.get("type") == "image" and isinstance(node.get("source"), dict):
        return [node["source"].get("data")]
    if node.get("type") == "input_image" and str(node.get("image_url")).startswith("data:"):
        return [node["image_url"].partition(",")[2]]
    if isinstance(node.get("inlineData"), dict):
        return [node["inlineData"].get("data")]
    return [d for value in node.values() for d in _image_data(value)]


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_image_codex_attaches_reaches_the_backends_model_call(codex_client, model_double,
                                                                backend):
    """`codex exec --image=picture.png` sends the picture as an input_image, and the backend's
    CLI behind clinvk passes it on: its model call carries the same PNG."""
    picture = codex_client.cwd / "picture.png"
    picture.write_bytes(png_bytes((255, 0, 0)))
    model_double.set(reply="red")
    assert codex_client.exec(backend, f"--image={picture}", "What colour is it?") == "red\n"
    (call,) = _calls_of(model_double, backend)
    assert _image_data(call["body"]) == [png_b64((255, 0, 0))]


def _agent_text(jsonl: str) -> tuple[str, str]:
    """(thread id, the agent's message) from `codex exec --json` output."""
    events = [json.loads(line) for line in jsonl.splitlines()]
    thread = next(e["thread_id"] for e in events if e["type"] == "thread.started")
    texts = [e["item"]["text"] for e in events
             if e["type"] == "item.completed" and e["item"]["type"] == "agent_message"]
    assert len(texts) == 1, events
    return thread, texts[0]


@pytest.mark.parametrize("backend", BACKENDS)
def test_resume_carries_the_conversation(codex_client, model_double, backend):
    """`codex exec resume <thread>` answers, and the backend's model sees the first turn
    (the user's words and the earlier answer) in its prompt."""
    model_double.set(reply="Hello Zed")
    thread, text = _agent_text(codex_client.exec(backend, "--json", "My name is Zed."))
    assert text == "Hello Zed"
    model_double.set(reply="Your name is Zed")
    again, text = _agent_text(codex_client.exec(backend, "--json", "resume", thread,
                                                "What is my name?"))
    assert (again, text) == (thread, "Your name is Zed")
    last = _calls_of(model_double, backend)[-1]
    seen = "\n".join(user_texts(last) + assistant_texts(last))
    assert "My name is Zed." in seen and "Hello Zed" in seen
    assert any(t.rstrip().endswith("What is my name?") for t in user_texts(last))


def _turn(server: AppServer, until_text: str | None = None,
          on_text=None) -> tuple[list[str], str]:
    """Read one turn's notifications: (the message deltas, the completed message). When
    the deltas so far add up to `until_text`, `on_text()` is called once."""
    deltas: list[str] = []
    completed = None
    while True:
        message = server.next()
        method, params = message.get("method"), message.get("params", {})
        if method == "item/agentMessage/delta":
            deltas.append(params["delta"])
            if on_text is not None and "".join(deltas) == until_text:
                on_text()
                on_text = None
        elif method == "item/completed" and params["item"]["type"] == "agentMessage":
            completed = params["item"]["text"]
        elif method == "turn/completed":
            assert params["turn"]["status"] == "completed", params
            assert completed is not None
            return deltas, completed


@pytest.mark.parametrize("app_server", ["claude", "gemini"], indirect=True)
def test_the_answer_streams_into_codexs_own_output(app_server, model_double):
    """With a backend that streams tokens, codex shows the answer's first words while the
    rest is still held back by the model (so they were streamed, not buffered), then the
    rest; the deltas add up to the whole message."""
    model_double.set(words=6)
    model_double.hold_after(2)  # the model sends "w0 w1", then waits for release()
    app_server.start_turn("count")
    deltas, message = _turn(app_server, until_text="w0 w1", on_text=model_double.release)
    assert len(deltas) > 2
    assert "".join(deltas) == message == "w0 w1 w2 w3 w4 w5"


@pytest.mark.parametrize("app_server", ["codex"], indirect=True)
def test_a_codex_backend_answer_reaches_codexs_output_whole(app_server, model_double):
    """The codex CLI behind clinvk prints whole messages (no token deltas), so the client
    shows its answer as one delta; a second turn in the same thread answers too."""
    model_double.set(words=6)
    app_server.start_turn("count")
    deltas, message = _turn(app_server)
    assert deltas == ["w0 w1 w2 w3 w4 w5"] and message == "w0 w1 w2 w3 w4 w5"
    model_double.set(reply="again")
    app_server.start_turn("once more")
    assert _turn(app_server) == (["again"], "again")


def test_codex_runs_the_command_its_backend_model_asked_for(codex_client, model_double,
                                                           clinvk_server):
    """codex's function tools reach the backend claude's model through the bridge: the
    model calls exec_command, codex runs it where codex runs (a file only the client's
    folder holds), and its output, sent back as a function_call_output, resumes claude,
    whose model quotes it as the turn's answer."""
    (codex_client.cwd / "notes.txt").write_text("the secret is 42\n")
    model_double.set(tool_use={"name": "mcp__client__exec_command",
                               "input": {"cmd": "cat notes.txt"}})
    out = codex_client.exec("claude", "what does notes.txt say?")
    assert "the secret is 42" in out
    offered = {t["name"] for c in _calls_of(model_double, "claude")
               for t in c["body"].get("tools") or []}
    assert "mcp__client__exec_command" in offered
    assert not {"Bash", "Read", "exec_command"} & offered  # none of the backend's own
    assert clinvk_server.wait_no_cli() == []
