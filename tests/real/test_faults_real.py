"""Resource faults under a real `clinvk serve` with the real CLIs: a full or read-only session
store, a CLI killed by SIGKILL mid-run, a workdir deleted mid-run, a CLI binary removed. Each
is a clear answer in the dialect's envelope; the server stays healthy; no session file is
truncated; no process is left."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.clis import cli_path, missing_clis
from tests.support.model_double import generation_requests
from tests.support.server import SETTLE_SECS, ClinvkServer


def _mount_tmpfs(path: Path, size: str) -> None:
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs",
                           str(path)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.fail(f"these fault tests mount a small tmpfs (as root, as CI runs): "
                    f"{done.stderr.strip()}", pytrace=False)


def _umount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)


@pytest.fixture
def server(model_double, tmp_path) -> Iterator[ClinvkServer]:
    """A server whose session store is a 256 KiB tmpfs of its own."""
    assert not missing_clis()
    sessions = tmp_path / "clinvk-home" / "sessions"
    _mount_tmpfs(sessions, "256k")
    started = ClinvkServer(model_double.url, tmp_path).start()
    try:
        yield started
    finally:
        model_double.release()
        started.stop(signal.SIGTERM)
        left = started.wait_no_cli()
        for path in sessions.glob("*.json"):
            json.loads(path.read_text())  # every session file is whole
        _umount(sessions)
        assert left == []


def _prompt(server: ClinvkServer, **body) -> httpx.Response:
    return httpx.post(server.url + "/api/v1/prompt", timeout=SETTLE_SECS * 4,
                      json={"backend": "claude", "prompt": "hello", **body})


def _dialects(server: ClinvkServer) -> dict[str, httpx.Response]:
    """The same new conversation asked in each dialect (each records a session)."""
    timeout = SETTLE_SECS * 4
    return {
        "native": _prompt(server),
        "openai": httpx.post(server.url + "/openai/v1/chat/completions", timeout=timeout,
                             json={"model": "claude",
                                   "messages": [{"role": "user", "content": "hello"}]}),
        "anthropic": httpx.post(server.url + "/anthropic/v1/messages", timeout=timeout,
                                json={"model": "claude", "max_tokens": 64,
                                      "messages": [{"role": "user", "content": "hello"}]}),
    }


def _message(dialect: str, response: httpx.Response) -> str:
    body = response.json()
    if dialect == "native":
        assert body["code"] == "session_store_unavailable"
        return body["detail"]
    if dialect == "openai":
        assert body["error"]["code"] == "session_store_unavailable"
        return body["error"]["message"]
    assert body["type"] == "error"
    return body["error"]["message"]


def _assert_store_fault(server: ClinvkServer, cause: str) -> None:
    for dialect, response in _dialects(server).items():
        assert response.status_code == 503, (dialect, response.text)
        message = _message(dialect, response)
        assert "session store" in message and cause in message, (dialect, message)
    health = httpx.get(server.url + "/health", timeout=30)
    assert health.status_code == 200 and health.json()["status"] in ("ok", "degraded")


def _files(server: ClinvkServer) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in (server.home / "sessions").glob("*.json")}


def test_a_full_session_store_is_a_503_naming_the_cause(server):
    """With the session store's disk full, every dialect answers 503 'the disk is full' (a
    streamed request too, before its stream starts), a turn of an existing session too; the
    stored files stay whole; freeing space heals it."""
    first = _prompt(server)
    assert first.status_code == 200, first.text
    session_id = first.json()["session_id"]
    before = _files(server)
    filler = server.home / "sessions" / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        with pytest.raises(OSError) as full:
            while True:
                os.write(fd, b"\0" * 4096)
        assert full.value.errno == errno.ENOSPC
    finally:
        os.close(fd)
    _assert_store_fault(server, "disk is full")
    stream = _prompt(server, output_format="stream-json")  # refused before any line
    assert stream.status_code == 503 and stream.json()["code"] == "session_store_unavailable"
    turn = _prompt(server, session_id=session_id)  # the CLI answers; recording it fails
    assert turn.status_code == 503 and "disk is full" in turn.json()["detail"]
    assert _files(server) == before  # nothing truncated, nothing half-written
    assert not list((server.home / "sessions").glob(".*.tmp"))
    filler.unlink()
    assert _prompt(server, session_id=session_id).status_code == 200


def test_a_read_only_session_store_is_a_503_naming_the_cause(server):
    """With the session store's file system read-only, every dialect answers 503 'read-only';
    the server stays healthy; remounted writable, it works again."""
    assert _prompt(server).status_code == 200
    before = _files(server)
    sessions = server.home / "sessions"
    subprocess.run(["mount", "-o", "remount,ro", str(sessions)], check=True)
    try:
        _assert_store_fault(server, "read-only")
        assert _files(server) == before
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(sessions)], check=True)
    assert _prompt(server).status_code == 200


def _in_flight(server: ClinvkServer, double, body: dict) -> tuple[threading.Thread, list]:
    """Start a streamed prompt held by the double after its first piece; return the thread
    and the list its NDJSON events land in, once the CLI waits on the model."""
    events: list[dict] = []

    def run() -> None:
        with httpx.stream("POST", server.url + "/api/v1/prompt", timeout=SETTLE_SECS * 4,
                          json={"backend": "claude", "prompt": "long",
                                "output_format": "stream-json", **body}) as r:
            events.extend(json.loads(line) for line in r.iter_lines() if line)

    double.hold_after(1)
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    deadline = time.monotonic() + SETTLE_SECS
    while not generation_requests(double.requests()):
        assert time.monotonic() < deadline, "claude never called the model"
        time.sleep(0.05)
    return thread, events


def _cli_children(server: ClinvkServer) -> list[int]:
    """The CLI processes themselves: the children of a run supervisor."""
    found = []
    for pid in server.cli_pids():
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                ppid = int(f.read().rsplit(b")", 1)[1].split()[1])
            with open(f"/proc/{ppid}/cmdline", "rb") as f:
                if b"supervise.py" in f.read():
                    found.append(pid)
        except OSError:
            continue
    return found


def test_a_cli_killed_by_sigkill_is_named_as_such(server, model_double):
    """A CLI killed with SIGKILL mid-run (what the OOM killer does) ends the stream with an
    error naming SIGKILL and the out-of-memory killer; the session is `error`; the next
    request works."""
    thread, events = _in_flight(server, model_double, {})
    [cli] = _cli_children(server)
    os.kill(cli, signal.SIGKILL)
    thread.join(SETTLE_SECS)
    assert not thread.is_alive()
    error = events[-1]
    assert error["type"] == "error", events
    message = error["content"]["message"]
    assert "SIGKILL" in message and "out-of-memory" in message
    session_id = next(e["session_id"] for e in events if e.get("session_id"))
    session = httpx.get(f"{server.url}/api/v1/sessions/{session_id}", timeout=30).json()
    assert session["status"] == "error"
    model_double.reset()
    assert _prompt(server).status_code == 200
    assert httpx.get(server.url + "/health", timeout=30).status_code == 200


def test_a_workdir_deleted_mid_run_and_the_next_turn(server, model_double, tmp_path):
    """claude keeps answering when its workdir is deleted under it (it needs the folder only
    to start); the session's next turn is a 400 naming the vanished workdir."""
    workdir = tmp_path / "doomed"
    workdir.mkdir()
    thread, events = _in_flight(server, model_double, {"workdir": str(workdir)})
    shutil.rmtree(workdir)
    model_double.release()
    thread.join(SETTLE_SECS)
    assert not thread.is_alive()
    assert events[-1]["type"] == "done", events
    session_id = next(e["session_id"] for e in events if e.get("session_id"))
    model_double.reset()
    turn = _prompt(server, session_id=session_id)
    assert turn.status_code == 400 and str(workdir) in turn.json()["detail"]
    assert httpx.get(server.url + "/health", timeout=30).status_code == 200


def test_a_cli_binary_removed_while_running(model_double, tmp_path):
    """Removing the CLI's binary while it runs lets the run finish (the kernel keeps the
    file); the next request is a 503 saying the command is missing, /health turns
    `degraded`, and restoring it makes the backend available again."""
    assert not missing_clis()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    claude = bin_dir / "claude"
    real = os.path.realpath(cli_path("claude"))
    os.link(real, claude) if os.stat(real).st_dev == os.stat(bin_dir).st_dev else \
        shutil.copy2(real, claude)
    server = ClinvkServer(model_double.url, tmp_path)
    config = server.config_path.read_text().replace(str(cli_path("claude")), str(claude))
    server.config_path.write_text(config)
    server.start()
    try:
        thread, events = _in_flight(server, model_double, {})
        claude.unlink()
        model_double.release()
        thread.join(SETTLE_SECS)
        assert events[-1]["type"] == "done", events
        model_double.reset()
        gone = _prompt(server)
        assert gone.status_code == 503, gone.text
        assert gone.json()["code"] == "backend_unavailable" and str(claude) in gone.text
        health = httpx.get(server.url + "/health", timeout=30).json()
        assert health["status"] == "degraded"
        shutil.copy2(real, claude)
        assert _prompt(server).status_code == 200
    finally:
        model_double.release()
        server.stop(signal.SIGTERM)
    assert server.wait_no_cli() == []
