"""dry_run on every native endpoint, with clinvoker's semantics: nothing runs, each output is
the command that would run, and the answer has exactly the shape of a real run."""

from __future__ import annotations

import json
import os
import stat

import msgspec
import pytest
from starlette.testclient import TestClient

from clinvk.adapters.backends.runner import SubprocessBackendRunner
from clinvk.adapters.http.app import create_app
from clinvk.domain.config import BackendConfig, UnifiedFlags
from clinvk.entrypoints.bootstrap import bootstrap
from tests.fakes import FakeClock, FakeIds, FakeSessionStore


@pytest.fixture
def tripwire(tmp_path):
    """A stand-in CLI for all three backends that leaves a file behind if it is ever run."""
    marker = tmp_path / "ran"
    script = tmp_path / "cli"
    script.write_text(f"#!/bin/sh\necho \"$@\" >> {marker}\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script, marker


@pytest.fixture
def real_runner_client(config, tripwire):
    """The app on the real subprocess runner, every backend's command being the tripwire."""
    script, _ = tripwire
    backends = {n: BackendConfig(command=str(script)) for n in ("claude", "codex", "gemini")}
    cfg = msgspec.structs.replace(config, backends=backends)
    store = FakeSessionStore()
    services = bootstrap(cfg, runner=SubprocessBackendRunner(cfg), store=store,
                         clock=FakeClock(), ids=FakeIds())
    with TestClient(create_app(services)) as client:
        client.store = store  # type: ignore[attr-defined]
        yield client


def test_dry_run_prompt_starts_no_process_and_records_a_session(real_runner_client, tripwire):
    """A dry-run prompt answers `Would execute: <path> [<args>]`, exit 0, a recorded session,
    and the CLI never ran."""
    script, marker = tripwire
    r = real_runner_client.post("/api/v1/prompt", json={
        "backend": "claude", "prompt": "explain this repo", "model": "sonnet", "dry_run": True,
    })
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["exit_code"] == 0
    assert body["output"].startswith(f"Would execute: {script} [-p ")
    assert body["output"].endswith("-- explain this repo]")
    assert "--model sonnet" in body["output"]
    assert body["command"][0] == str(script)
    session = real_runner_client.store.sessions[body["session_id"]]
    assert r.headers["x-clinvk-session-id"] == session.id
    assert (session.turn_count, session.backend_session_id) == (0, None)
    assert "dry-run" in session.tags
    assert not marker.exists()


def test_dry_run_ephemeral_prompt_keeps_no_session(real_runner_client, tripwire):
    """An ephemeral dry run records nothing and answers without a session_id."""
    r = real_runner_client.post("/api/v1/prompt", json={
        "backend": "codex", "prompt": "x", "dry_run": True, "ephemeral": True,
    })
    assert r.status_code == 200
    assert "session_id" not in r.json()
    assert real_runner_client.store.sessions == {}
    assert not tripwire[1].exists()


def test_dry_run_stream_has_the_events_of_a_real_run(real_runner_client, tripwire):
    """A streamed dry run sends init, the command as a message, and done; nothing runs."""
    with real_runner_client.stream("POST", "/api/v1/prompt", json={
        "backend": "gemini", "prompt": "x", "dry_run": True, "output_format": "stream-json",
    }) as r:
        lines = [json.loads(line) for line in r.iter_lines() if line]
    assert [line["type"] for line in lines] == ["init", "message", "done"]
    assert lines[1]["content"]["text"].startswith("Would execute: ")
    assert lines[0]["session_id"] == lines[2]["session_id"] is not None
    assert not tripwire[1].exists()


def test_dry_run_parallel_covers_every_task(real_runner_client, tripwire):
    """A top-level dry_run makes every parallel task a dry run, in the shape of a real run."""
    r = real_runner_client.post("/api/v1/parallel", json={"dry_run": True, "tasks": [
        {"backend": "claude", "prompt": "a"},
        {"backend": "codex", "prompt": "b", "model": "gpt-5-codex"},
        {"backend": "gemini", "prompt": "c"},
    ]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["total_tasks"], body["completed"], body["failed"]) == (3, 3, 0)
    assert [t["exit_code"] for t in body["results"]] == [0, 0, 0]
    assert all(t["output"].startswith(f"Would execute: {tripwire[0]} [")
               for t in body["results"])
    assert "gpt-5-codex" in body["results"][1]["output"]
    assert not tripwire[1].exists()


def test_dry_run_chain_feeds_each_output_into_previous(real_runner_client, tripwire):
    """In a dry-run chain `{{previous}}` is the previous step's dry-run output."""
    r = real_runner_client.post("/api/v1/chain", json={"dry_run": True, "steps": [
        {"name": "plan", "backend": "claude", "prompt": "plan it"},
        {"name": "check", "backend": "codex", "prompt": "check: {{previous}}"},
    ]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["total_steps"], body["completed_steps"], body["failed_step"]) == (2, 2, 0)
    first, second = body["results"]
    assert first["output"].startswith("Would execute: ")
    assert f"check: {first['output']}" in second["output"]
    assert not tripwire[1].exists()


def test_dry_run_compare_covers_every_backend(real_runner_client, tripwire):
    """A dry-run compare answers prompt, backends and one command per backend."""
    r = real_runner_client.post("/api/v1/compare", json={
        "prompt": "which is faster?", "backends": ["claude", "codex", "gemini"],
        "model": "m1", "dry_run": True,
    })
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["prompt"], body["backends"]) == ("which is faster?", ["claude", "codex", "gemini"])
    assert [x["backend"] for x in body["results"]] == ["claude", "codex", "gemini"]
    assert all(x["exit_code"] == 0 and "m1" in x["output"] for x in body["results"])
    assert not tripwire[1].exists()


def test_dry_run_refuses_a_bad_flag_before_recording_anything(real_runner_client, tripwire):
    """A dry run checks `extra` like a real run: a refused flag is a 400 and no session."""
    r = real_runner_client.post("/api/v1/prompt", json={
        "backend": "claude", "prompt": "x", "dry_run": True, "extra": ["--dangerously-x"],
    })
    assert r.status_code == 400
    assert real_runner_client.store.sessions == {}


def test_unified_flags_dry_run_makes_every_run_a_dry_run(config, tripwire):
    """With `unified_flags.dry_run: true` every request is a dry run, on every dialect."""
    script, marker = tripwire
    backends = {n: BackendConfig(command=str(script)) for n in ("claude", "codex", "gemini")}
    cfg = msgspec.structs.replace(config, backends=backends,
                                  unified_flags=UnifiedFlags(dry_run=True))
    services = bootstrap(cfg, runner=SubprocessBackendRunner(cfg), store=FakeSessionStore(),
                         clock=FakeClock(), ids=FakeIds())
    with TestClient(create_app(services)) as client:
        r = client.post("/api/v1/prompt", json={"backend": "claude", "prompt": "x"})
        assert r.json()["output"].startswith("Would execute: ")
        r = client.post("/openai/v1/chat/completions", json={
            "model": "codex", "messages": [{"role": "user", "content": "hi"}],
        })
        assert r.status_code == 200, r.text
        assert r.json()["choices"][0]["message"]["content"].startswith("Would execute: ")
    assert not marker.exists()
    assert os.access(script, os.X_OK)
