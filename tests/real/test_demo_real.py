"""`clinvk serve --demo` and the start-up report, run the way a newcomer runs them.

The demo server is started with the CLIs only in the project's `.cache/clis` (no PATH entry
leads to them, HOME is empty), so these tests also prove that discovery finds them there.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import anthropic
import httpx
import openai
import pytest

from clinvk.adapters.backends.discovery import NPM_PACKAGES, PINNED_VERSIONS
from tests.support.clis import CLI_NAMES, REPO_ROOT, cli_dir, missing_clis
from tests.support.server import free_port

pytestmark = pytest.mark.real

LABEL = "[clinvk demo] "


def _path_without_clis() -> str:
    """The test process's PATH minus every folder that holds one of the CLIs."""
    dirs = os.environ.get("PATH", "").split(os.pathsep)
    keep = [d for d in dirs if d and not any(os.path.exists(os.path.join(d, n)) for n in CLI_NAMES)]
    return os.pathsep.join(keep)


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLINVK_")}
    env.update(extra)
    return env


class Serve:
    """`clinvk serve ARGS` in a subprocess with a given environment; its log is JSON lines."""

    def __init__(self, tmp: Path, args: list[str], env: dict[str, str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = tmp / "serve.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115
        self.process = subprocess.Popen(
            [sys.executable, "-m", "clinvk.entrypoints.cli", "serve", "--port", str(self.port),
             *args],
            env=env, cwd=tmp, stdout=self._log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"clinvk serve exited: {self.log_path.read_text()}")
            try:
                httpx.get(self.url + "/health", timeout=1)
                return
            except httpx.HTTPError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"clinvk serve did not start: {self.log_path.read_text()}")

    def health(self) -> dict:
        return httpx.get(self.url + "/health", timeout=10).json()

    def lines(self) -> list[dict]:
        """The JSON log lines so far."""
        out = []
        for line in self.log_path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out

    def stop(self) -> int | None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return self.process.returncode


def _start_demo(tmp: Path) -> Serve:
    missing = missing_clis()
    if missing:
        pytest.fail(f"backend CLIs not installed: {', '.join(missing)}", pytrace=False)
    home = tmp / "home"
    home.mkdir()
    return Serve(tmp, ["--demo"], _clean_env(PATH=_path_without_clis(), HOME=str(home)))


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Iterator[Serve]:
    """One `clinvk serve --demo` for the module, CLIs reachable only through .cache/clis."""
    server = _start_demo(tmp_path_factory.mktemp("demo"))
    yield server
    server.stop()


def test_demo_finds_the_pinned_clis_in_the_project_cache(demo):
    """Every backend is available from .cache/clis, /health says demo mode, and the start-up
    report gives each CLI's path and pinned version."""
    health = demo.health()
    assert (health["status"], health["demo"]) == ("ok", True)
    for backend in health["backends"]:
        assert backend["available"] is True
        assert Path(backend["path"]).parent == cli_dir() / "node_modules" / ".bin"
    deadline = time.monotonic() + 300  # gemini's --version took over 90 s on a loaded machine
    found: dict[str, dict] = {}
    while len(found) < len(CLI_NAMES) and time.monotonic() < deadline:
        found = {ln["backend"]: ln for ln in demo.lines() if ln.get("event") == "backend found"}
        time.sleep(0.2)
    assert {name: ln["version"] for name, ln in found.items()} == PINNED_VERSIONS
    assert {b["name"]: b.get("version") for b in demo.health()["backends"]} == PINNED_VERSIONS
    events = [ln["event"] for ln in demo.lines()]
    assert any(e.startswith("demo mode:") for e in events)


@pytest.mark.parametrize("backend", CLI_NAMES)
def test_native_prompt_gets_a_labelled_answer(demo, backend):
    """POST /api/v1/prompt runs the real CLI and answers with the demo-labelled canned text."""
    r = httpx.post(demo.url + "/api/v1/prompt", json={"backend": backend, "prompt": "Hello!"},
                   timeout=120)
    assert r.status_code == 200, r.text
    assert r.json()["output"].startswith(LABEL)


def test_openai_sdk_chat_completion_gets_a_labelled_answer(demo):
    """An OpenAI-SDK chat completion against the demo answers with the labelled text."""
    with openai.OpenAI(base_url=demo.url + "/openai/v1", api_key="not-needed",
                       max_retries=0, timeout=120) as client:
        completion = client.chat.completions.create(
            model="codex", messages=[{"role": "user", "content": "Hello!"}]
        )
    assert (completion.choices[0].message.content or "").startswith(LABEL)


def test_anthropic_sdk_message_gets_a_labelled_answer(demo):
    """An Anthropic-SDK message against the demo answers with the labelled text."""
    with anthropic.Anthropic(base_url=demo.url + "/anthropic/v1", api_key="not-needed",
                             max_retries=0, timeout=120) as client:
        message = client.messages.create(
            model="gemini", max_tokens=1024, messages=[{"role": "user", "content": "Hello!"}]
        )
    assert message.content[0].text.startswith(LABEL)


def test_sigterm_removes_the_demo_folder_and_stops_the_stand_in(tmp_path):
    """After SIGTERM the demo's temporary folder is gone and its stand-in no longer listens."""
    server = _start_demo(tmp_path)
    try:
        (notice,) = [ln for ln in server.lines() if ln["event"].startswith("demo mode:")]
        folder, model_api = Path(notice["state"]), notice["model_api"]
        assert folder.is_dir()
        assert httpx.get(model_api + "/_control", timeout=5).status_code == 200
    finally:
        code = server.stop()
    assert code == -signal.SIGTERM
    assert not folder.exists()
    with pytest.raises(httpx.ConnectError):
        httpx.get(model_api + "/_control", timeout=5)


def test_serve_without_clis_names_each_missing_backend_and_how_to_install_it(tmp_path):
    """On a fresh checkout with nothing installed (empty PATH, empty HOME, no .cache/clis),
    `clinvk serve` starts degraded and reports, per backend, where it looked and the npm
    command, the install script and the config key that would fix it."""
    checkout = tmp_path / "checkout"
    shutil.copytree(REPO_ROOT / "src", checkout / "src",
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    (checkout / "scripts").mkdir()
    shutil.copy(REPO_ROOT / "scripts" / "install-clis.sh", checkout / "scripts")
    home = tmp_path / "home"
    home.mkdir()
    env = {"PATH": "", "HOME": str(home), "PYTHONPATH": str(checkout / "src")}
    # System-wide folders are searched too; a CLI really installed there is not "missing".
    system = ("/usr/local/bin", "/opt/homebrew/bin")
    expected = [n for n in CLI_NAMES if not any(os.path.exists(f"{d}/{n}") for d in system)]
    server = Serve(tmp_path, [], env)
    try:
        health = server.health()
        reports = {ln["backend"]: ln for ln in server.lines()
                   if ln.get("event") == "backend unavailable"}
    finally:
        server.stop()
    assert "demo" not in health
    assert expected, "every CLI is installed system-wide here; nothing left to check"
    assert health["status"] == "degraded"
    for name in expected:
        assert not next(b for b in health["backends"] if b["name"] == name)["available"]
        report = reports[name]
        assert report["reason"].startswith(f"{name} not found in ")
        assert "project CLI cache" in report["reason"]
        assert f"`npm install -g {NPM_PACKAGES[name]}`" in report["fix"]
        assert f"`./scripts/install-clis.sh` in {checkout}" in report["fix"]
        assert f"`backends.{name}.command`" in report["fix"]
