"""gemini's retry budget through a home overlay (`GEMINI_CLI_HOME`), the way a server that
does not run as root applies it, with the real gemini against the model double.

The session server (and these machines) run as root, where the system settings layer is
used; here the runner gets a gemini backend whose system layer is unusable, as it is for
any other user, so the home overlay is what carries `general.maxAttempts`.
"""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest
import yaml

from clinvk.adapters.backends.gemini import GeminiBackend
from clinvk.adapters.backends.gemini_settings import HomeOverlays, SettingsOverlays
from clinvk.adapters.backends.runner import SubprocessBackendRunner
from clinvk.adapters.config.yaml_config import load_config
from clinvk.domain.errors import BackendFailed
from clinvk.domain.models import RunSpec
from tests.support.model_double import ModelDouble, generation_requests

pytestmark = pytest.mark.real


def _runner(cli_settings: dict, tmp_path: Path) -> tuple[SubprocessBackendRunner, Path]:
    """A runner for gemini with the CLI's own retry default (10 attempts) in the user's
    settings, and no system settings layer it could use."""
    gemini = dict(cli_settings["gemini"])
    home = Path(gemini["env"]["GEMINI_CLI_HOME"])
    settings_file = home / ".gemini" / "settings.json"
    settings = json.loads(settings_file.read_text())
    del settings["general"]["maxAttempts"]
    settings_file.write_text(json.dumps(settings))
    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump({
        "backends": {"gemini": {k: v for k, v in gemini.items() if v is not None}},
    }))
    config = load_config(str(config_file), environ={})
    (tmp_path / "homes").mkdir()
    backend = GeminiBackend(SettingsOverlays(list),
                            HomeOverlays(lambda: [str(tmp_path / "homes")]))
    return SubprocessBackendRunner(config, {"gemini": backend}), home


def _spec(workdir: Path, prompt: str = "hi", **fields) -> RunSpec:
    return RunSpec(backend="gemini", prompt=prompt, workdir=str(workdir),
                   model="gemini-2.5-flash", **fields)


def test_home_overlay_carries_max_retries_to_gemini(cli_settings, model_double: ModelDouble,
                                                   workdir, tmp_path):
    """With `max_retries: 0` a failing API is one call and a failure, although the user's
    settings leave gemini at its default of 10 attempts."""
    runner, _ = _runner(cli_settings, tmp_path)
    model_double.set(fail_status=500)
    with pytest.raises(BackendFailed):
        anyio.run(runner.run, _spec(workdir, max_retries=0))
    calls = [r for r in generation_requests(model_double.requests()) if r["api"] == "gemini"]
    assert len(calls) == 1


def test_a_session_made_through_the_overlay_resumes_in_the_users_home(
        cli_settings, model_double: ModelDouble, workdir, tmp_path):
    """A turn run through the overlay keeps its chat in the user's own `.gemini`, so a
    later turn without the overlay (no budget) resumes it with the earlier context."""
    runner, home = _runner(cli_settings, tmp_path)
    model_double.set(reply="first answer")
    first = anyio.run(runner.run, _spec(workdir, max_retries=1))
    assert first.backend_session_id
    chats = list((home / ".gemini" / "tmp").glob("*/chats/*"))
    assert chats and all(not p.is_symlink() for p in chats)
    model_double.set(reply="second answer")
    second = anyio.run(runner.run, _spec(workdir, resume_id=first.backend_session_id,
                                         prompt="and again"))
    assert second.output == "second answer"
    last = generation_requests(model_double.requests())[-1]
    assert "first answer" in json.dumps(last["body"])
