"""API keys from the environment and gopass; server secrets never reach a CLI."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from clinvk.adapters.backends.base import build_env
from clinvk.adapters.secrets import SecretsError, gopass_keys, load_api_keys, split_keys
from clinvk.domain.config import BackendConfig


def fake_gopass(tmp_path: Path, script: str) -> str:
    """An executable standing in for gopass; it records its arguments."""
    path = tmp_path / "gopass"
    path.write_text(f"#!/bin/sh\necho \"$@\" > {tmp_path}/args\n{script}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def test_environment_keys_are_comma_separated():
    """CLINVK_API_KEYS is split on commas; blanks and duplicates are dropped."""
    assert split_keys(" a , b,,a, c ") == ["a", "b", "c"]
    assert load_api_keys({"CLINVK_API_KEYS": "k1,k2"}, "") == ["k1", "k2"]
    assert load_api_keys({}, "") == []
    assert load_api_keys({"CLINVK_API_KEYS": " , "}, "") == []


def test_gopass_password_line_holds_the_keys(tmp_path):
    """The secret's first (password) line is read, comma-separated; only that line."""
    exe = fake_gopass(tmp_path, "printf 'gp1,gp2\\nuser: someone\\n'")
    assert gopass_keys("clinvk/api-keys", gopass=exe) == ["gp1", "gp2"]
    assert (tmp_path / "args").read_text().split() == ["show", "--password", "clinvk/api-keys"]


def test_environment_and_gopass_keys_are_combined(tmp_path):
    """Keys from both sources are used together, environment first."""
    exe = fake_gopass(tmp_path, "echo gp1,env1")
    keys = load_api_keys({"CLINVK_API_KEYS": "env1"}, "team/clinvk", gopass=exe)
    assert keys == ["env1", "gp1"]


def test_failing_gopass_is_a_clear_error_without_the_secret(tmp_path):
    """A gopass that fails stops start-up with its own message, never an open server."""
    exe = fake_gopass(tmp_path, "echo 'Error: entry is not in the password store' >&2; exit 11")
    with pytest.raises(SecretsError, match="entry is not in the password store"):
        gopass_keys("missing/path", gopass=exe)


def test_empty_gopass_secret_is_an_error(tmp_path):
    """A secret with no key in it is refused rather than silently turning auth off."""
    exe = fake_gopass(tmp_path, "printf '\\n'")
    with pytest.raises(SecretsError, match="holds no API key"):
        gopass_keys("empty", gopass=exe)


def test_missing_gopass_is_a_clear_error(monkeypatch, tmp_path):
    """A configured gopass path without the gopass command installed is a start-up error."""
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(SecretsError, match="gopass command is not installed"):
        load_api_keys({}, "clinvk/keys")


def test_hanging_gopass_times_out(tmp_path, monkeypatch):
    """gopass waiting for a passphrase cannot stall start-up forever."""
    monkeypatch.setattr("clinvk.adapters.secrets.GOPASS_TIMEOUT_SECS", 0.5)
    exe = fake_gopass(tmp_path, "exec sleep 30")
    with pytest.raises(SecretsError, match="did not answer"):
        gopass_keys("slow", gopass=exe)


def test_server_secrets_are_not_in_a_clis_environment(monkeypatch):
    """CLINVK_API_KEYS (and other server-only variables) set for the server are not passed
    to a CLI; only the explicit list, the CLI's own prefixes and its config are."""
    monkeypatch.setenv("CLINVK_API_KEYS", "server-secret")
    monkeypatch.setenv("CLINVK_API_KEYS_GOPASS_PATH", "team/keys")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws-secret")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "cli-own-key")
    env = build_env(("ANTHROPIC_",), BackendConfig(env={"EXTRA": "1"}), {})
    assert "CLINVK_API_KEYS" not in env and "CLINVK_API_KEYS_GOPASS_PATH" not in env
    assert "AWS_SECRET_ACCESS_KEY" not in env
    assert "server-secret" not in env.values()
    assert env["ANTHROPIC_API_KEY"] == "cli-own-key" and env["EXTRA"] == "1"
    assert env["PATH"] == os.environ["PATH"]
