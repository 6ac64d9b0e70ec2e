"""The workdir policy at HTTP level: symlinks resolved before the prefix checks."""

from __future__ import annotations

import os

import msgspec
import pytest
from starlette.testclient import TestClient

from clinvk.adapters.http.app import create_app
from clinvk.entrypoints.bootstrap import bootstrap
from tests.fakes import FakeClock, FakeIds, FakeSessionStore


@pytest.fixture
def allowed(tmp_path):
    """An allowed folder holding a symlink to /etc and one to a real subfolder."""
    root = tmp_path / "projects"
    (root / "real").mkdir(parents=True)
    os.symlink("/etc", root / "escape")
    os.symlink(root / "real", root / "alias")
    return root


@pytest.fixture
def policy_client(config, allowed, runner):
    server = msgspec.structs.replace(config.server, allowed_workdir_prefixes=[str(allowed)])
    services = bootstrap(msgspec.structs.replace(config, server=server), runner=runner,
                         store=FakeSessionStore(), clock=FakeClock(), ids=FakeIds())
    with TestClient(create_app(services)) as client:
        yield client


def test_symlink_inside_an_allowed_folder_pointing_at_etc_is_403(policy_client, allowed, runner):
    """A link in an allowed folder that points at /etc is refused with 403 naming the rule."""
    r = policy_client.post("/api/v1/prompt", json={
        "backend": "claude", "prompt": "hi", "workdir": str(allowed / "escape"),
    })
    assert r.status_code == 403
    problem = r.json()
    assert problem["code"] == "workdir_forbidden"
    assert "'/etc'" in problem["detail"] and "blocked prefix" in problem["detail"]
    assert runner.runs == []


def test_the_same_escape_is_refused_in_the_compatible_dialects(policy_client, allowed, runner):
    """The OpenAI and Anthropic dialects apply the same policy to their clinvk.workdir."""
    escape = str(allowed / "escape")
    r = policy_client.post("/openai/v1/chat/completions", json={
        "model": "claude", "messages": [{"role": "user", "content": "hi"}],
        "clinvk": {"workdir": escape},
    })
    assert r.status_code == 403
    assert "blocked prefix" in r.json()["error"]["message"]
    r = policy_client.post("/anthropic/v1/messages", json={
        "model": "claude", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}],
        "clinvk": {"workdir": escape},
    })
    assert r.status_code == 403
    assert r.json()["error"]["type"] == "permission_error"
    assert runner.runs == []


def test_outside_the_allowed_prefixes_is_403_naming_them(policy_client, allowed, tmp_path):
    """A real folder outside the allowed prefixes is refused and the message lists them."""
    other = tmp_path / "elsewhere"
    other.mkdir()
    r = policy_client.post("/api/v1/prompt", json={
        "backend": "claude", "prompt": "hi", "workdir": str(other),
    })
    assert r.status_code == 403
    assert "outside the allowed prefixes" in r.json()["detail"]
    assert str(allowed) in r.json()["detail"]


def test_a_symlink_to_an_allowed_folder_runs_in_its_real_path(policy_client, allowed, runner):
    """A link that stays inside the allowed folder is fine; the CLI runs in the real path."""
    r = policy_client.post("/api/v1/prompt", json={
        "backend": "claude", "prompt": "hi", "workdir": str(allowed / "alias"),
    })
    assert r.status_code == 200, r.text
    assert runner.runs[0].workdir == str((allowed / "real").resolve())
