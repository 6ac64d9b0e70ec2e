"""Operations on a real `clinvk serve`: service files, start-up checks, logs, shutdown."""

from __future__ import annotations

import configparser
import json
import os
import plistlib
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
import yaml

from tests.support.clis import REPO_ROOT, missing_clis
from tests.support.server import SETTLE_SECS, ClinvkServer, free_port

PACKAGING = REPO_ROOT / "packaging"
CLINVK = Path(sys.executable).with_name("clinvk")


class Served:
    """`clinvk` started from an argv with its own environment; its output is kept."""

    def __init__(self, argv: list[str], tmp_path: Path, env: dict[str, str] | None = None,
                 config: dict | None = None) -> None:
        self.home = tmp_path / "home"
        self.home.mkdir(exist_ok=True)
        self.log_path = tmp_path / "serve.log"
        base = {k: v for k, v in os.environ.items() if not k.startswith("CLINVK_")}
        self.env = {**base, "CLINVK_HOME": str(self.home), **(env or {})}
        if config is not None:
            (self.home / "config.yaml").write_text(yaml.safe_dump(config))
        self.argv = argv
        self.process: subprocess.Popen | None = None

    def start(self, url: str | None = None) -> Served:
        self._log = open(self.log_path, "wb")  # noqa: SIM115 (closed in stop)
        self.process = subprocess.Popen(self.argv, env=self.env, cwd=self.home,
                                        stdout=self._log, stderr=subprocess.STDOUT)
        if url is not None:
            deadline = time.monotonic() + 30
            while True:
                assert self.process.poll() is None, self.output()
                try:
                    if httpx.get(url + "/health", timeout=1).status_code in (200, 503):
                        return self
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, self.output()
                time.sleep(0.1)
        return self

    def wait(self, timeout: float) -> int:
        assert self.process is not None
        return self.process.wait(timeout)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return self.process.returncode

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def json_lines(self) -> list[dict]:
        return [json.loads(line) for line in self.output().splitlines()
                if line.startswith("{")]


@pytest.fixture
def served():
    started: list[Served] = []

    def make(*args, **kwargs) -> Served:
        s = Served(*args, **kwargs)
        started.append(s)
        return s

    yield make
    for s in started:
        s.stop(signal.SIGKILL)


# -- service files -------------------------------------------------------------------------


def unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(PACKAGING / "systemd" / "clinvk.service")
    return parser


def test_systemd_unit_verifies_and_its_command_serves(tmp_path, served):
    """systemd-analyze verifies the unit, and its ExecStart (binary path aside) serves,
    then stops by itself on the unit's KillSignal (before TimeoutStopSec would kill it)."""
    text = (PACKAGING / "systemd" / "clinvk.service").read_text()
    local = tmp_path / "clinvk.service"
    local.write_text(text.replace("/usr/local/bin/clinvk", str(CLINVK))
                     .replace("User=clinvk", "User=root").replace("Group=clinvk", "Group=root"))
    verify = subprocess.run(["systemd-analyze", "verify", str(local)],
                            capture_output=True, text=True, check=False)
    assert verify.returncode == 0, verify.stderr
    service = unit()["Service"]
    # control-group: after a crash nothing of the unit's cgroup survives into the restart.
    assert service["Restart"] == "always" and service["KillMode"] == "control-group"
    assert unit()["Install"]["WantedBy"] == "multi-user.target"
    argv = shlex.split(service["ExecStart"])
    assert argv[:2] == ["/usr/local/bin/clinvk", "serve"]
    port = free_port()
    argv = [str(CLINVK), *argv[1:]]
    argv[argv.index("--port") + 1] = str(port)
    server = served(argv, tmp_path).start(f"http://127.0.0.1:{port}")
    kill = signal.Signals[service["KillSignal"]]
    server.process.send_signal(kill)
    # uvicorn re-raises the signal after its graceful shutdown; systemd counts an exit by
    # SIGTERM as clean. An idle server stops at once; the wait only guards against a hang.
    assert server.wait(max(float(service["TimeoutStopSec"]), SETTLE_SECS)) in (0, -kill)
    assert "Application shutdown complete" in server.output()


def test_launchd_plist_parses_and_its_arguments_serve(tmp_path, served):
    """The launchd plist is a valid property list whose ProgramArguments serve."""
    with open(PACKAGING / "launchd" / "com.clinvk.server.plist", "rb") as f:
        plist = plistlib.load(f)
    assert plist["Label"] == "com.clinvk.server"
    assert plist["RunAtLoad"] is True and plist["KeepAlive"] is True
    assert "/usr/local/bin" in plist["EnvironmentVariables"]["PATH"].split(":")
    assert plist["ExitTimeOut"] > 10  # longer than the default shutdown grace
    argv = list(plist["ProgramArguments"])
    assert argv[:2] == ["/usr/local/bin/clinvk", "serve"]
    port = free_port()
    argv[0] = str(CLINVK)
    argv[argv.index("--port") + 1] = str(port)
    env = {"PATH": plist["EnvironmentVariables"]["PATH"] + ":" + os.environ["PATH"]}
    server = served(argv, tmp_path, env=env).start(f"http://127.0.0.1:{port}")
    assert server.stop(signal.SIGTERM) in (0, -signal.SIGTERM)
    assert "Application shutdown complete" in server.output()


def dockerfile() -> list[tuple[str, str]]:
    """(instruction, arguments) of the Dockerfile, continuation lines joined."""
    text = (REPO_ROOT / "Dockerfile").read_text()
    text = re.sub(r"\\\n", " ", text)
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_dockerfile_is_multi_stage_non_root_with_the_pinned_clis():
    """The image builds in stages, runs as a non-root user under tini, serves on 0.0.0.0:8080
    with a health check, and installs the same CLI versions the tests run (or none)."""
    steps = dockerfile()
    stages = [args for word, args in steps if word == "FROM"]
    assert len(stages) >= 2 and any(" AS " in s.upper() for s in stages)
    final = steps[max(i for i, (w, _) in enumerate(steps) if w == "FROM"):]
    users = [args for word, args in final if word == "USER"]
    assert users and users[-1] not in ("root", "0")
    # an init as PID 1 (reaps orphans' zombies, forwards signals), clinvk below it
    assert json.loads(dict(final)["ENTRYPOINT"]) == ["/usr/bin/tini", "--", "clinvk"]
    assert "tini" in " ".join(a for w, a in final if w == "RUN")
    assert json.loads(dict(final)["CMD"])[:3] == ["serve", "--host", "0.0.0.0"]
    assert "/health" in dict(final)["HEALTHCHECK"]
    pins = re.search(r"pins=\(([^)]*)\)", (REPO_ROOT / "scripts/install-clis.sh").read_text())
    assert pins is not None
    args = " ".join(a for w, a in steps if w == "ARG")
    assert 'INSTALL_CLIS=' in args
    assert all(pin in args for pin in pins.group(1).split())
    copied = [a for w, a in steps if w == "COPY" and "--from" not in a]
    assert copied == ["pyproject.toml README.md ./", "src ./src"]


def test_a_non_editable_install_serves_the_docs_assets(tmp_path, served):
    """What the Dockerfile copies (pyproject, README, src) installs into a package that
    serves /docs and its assets: the static files ship in the package."""
    context = tmp_path / "context"  # exactly what the build stage COPYs
    context.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO_ROOT / name, context / name)
    shutil.copytree(REPO_ROOT / "src", context / "src",
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    target = tmp_path / "site"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
         "--target", str(target), str(context)],
        capture_output=True, text=True, check=False, cwd=tmp_path,
    )
    assert build.returncode == 0, build.stderr
    assert (target / "clinvk" / "adapters" / "http" / "static" / "docs.js").is_file()
    port = free_port()
    env = {"PYTHONPATH": str(target)}
    probe = subprocess.run([sys.executable, "-c", "import clinvk; print(clinvk.__file__)"], check=False,
                           env={**os.environ, **env}, capture_output=True, text=True)
    assert probe.stdout.startswith(str(target))
    server = served([sys.executable, "-m", "clinvk.entrypoints.cli", "serve", "--port",
                     str(port)], tmp_path, env=env).start(f"http://127.0.0.1:{port}")
    url = f"http://127.0.0.1:{port}"
    assert httpx.get(url + "/docs").status_code == 200
    assert httpx.get(url + "/docs/docs.js").status_code == 200
    server.stop()


# -- start-up checks -------------------------------------------------------------------


def test_failing_gopass_stops_start_up(tmp_path, served):
    """A configured gopass path that cannot be read is a clear start-up error, not an open
    server."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    gopass = bin_dir / "gopass"
    gopass.write_text("#!/bin/sh\necho 'gpg: decryption failed: No secret key' >&2\nexit 1\n")
    gopass.chmod(0o755)
    port = free_port()
    server = served([str(CLINVK), "serve", "--port", str(port)], tmp_path,
                    env={"PATH": f"{bin_dir}:{os.environ['PATH']}",
                         "CLINVK_API_KEYS_GOPASS_PATH": "team/clinvk"}).start()
    assert server.wait(30) == 2
    assert "decryption failed" in server.output()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/health", timeout=1)


def test_gopass_keys_protect_the_server(tmp_path, served):
    """Keys read from gopass are enforced; the keys never appear in the server's log."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    gopass = bin_dir / "gopass"
    gopass.write_text("#!/bin/sh\necho 'gp-key-1,gp-key-2'\necho 'note: not a key'\n")
    gopass.chmod(0o755)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = served([str(CLINVK), "serve", "--port", str(port)], tmp_path,
                    env={"PATH": f"{bin_dir}:{os.environ['PATH']}"},
                    config={"server": {"api_keys_gopass_path": "team/clinvk"}}).start(url)
    assert httpx.get(url + "/api/v1/backends").status_code == 401
    assert httpx.get(url + "/api/v1/backends",
                     headers={"X-Api-Key": "note: not a key"}).status_code == 401
    assert httpx.get(url + "/api/v1/backends",
                     headers={"Authorization": "Bearer gp-key-2"}).status_code == 200
    server.stop()
    assert "gp-key" not in server.output()


def test_non_loopback_bind_without_keys_warns_and_logs_are_json(tmp_path, served):
    """Binding to 0.0.0.0 without keys logs a warning; every log line is JSON (not a TTY),
    and the request's summary line carries its request id."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = served([str(CLINVK), "serve", "--host", "0.0.0.0", "--port", str(port)],
                    tmp_path).start(url)
    httpx.get(url + "/api/v1/backends", headers={"X-Request-ID": "ops-1"})
    server.stop()
    lines = server.json_lines()
    assert len(lines) == len([x for x in server.output().splitlines() if x.strip()])
    warnings = [x for x in lines if x["level"] == "warning"]
    assert any("non-loopback" in x["event"] for x in warnings)
    summary = next(x for x in lines if x["event"] == "request" and x["path"] == "/api/v1/backends")
    assert summary["request_id"] == "ops-1" and summary["status"] == 200


def test_loopback_or_keys_means_no_warning(tmp_path, served):
    """With API keys set, binding to 0.0.0.0 starts without the exposure warning."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = served([str(CLINVK), "serve", "--host", "0.0.0.0", "--port", str(port)],
                    tmp_path, env={"CLINVK_API_KEYS": "k1"}).start(url)
    assert httpx.get(url + "/api/v1/backends", headers={"X-Api-Key": "k1"}).status_code == 200
    server.stop()
    assert not [x for x in server.json_lines() if x["level"] == "warning"]
    assert "k1" not in server.output().replace("127.0.0.1", "")


# -- shutdown with the real CLIs ---------------------------------------------------------


def test_sigint_with_a_long_running_cli_leaves_no_process(model_double, tmp_path):
    """SIGINT (Ctrl-C) during a long answer ends the server and every CLI it started."""
    assert not missing_clis()
    server = ClinvkServer(model_double.url, tmp_path, shutdown_grace_secs=1).start()
    try:
        model_double.hold_after(1)  # the answer never ends by itself
        started = threading.Event()

        def client() -> None:
            try:
                with httpx.stream("POST", server.url + "/api/v1/prompt", timeout=60, json={
                    "backend": "claude", "prompt": "long", "output_format": "stream-json",
                }) as r:
                    for line in r.iter_lines():
                        if line and json.loads(line)["type"] == "delta":
                            started.set()
            except httpx.HTTPError:
                pass

        threading.Thread(target=client, daemon=True).start()
        assert started.wait(30), "the CLI never started streaming"
        assert server.cli_pids()
        code = server.stop(signal.SIGINT)
        assert code is not None and code != -signal.SIGKILL  # it stopped by itself
        assert server.wait_no_cli() == []
    finally:
        server.stop(signal.SIGKILL)


def test_sigterm_lets_an_in_flight_request_finish(model_double, tmp_path):
    """A request already running when SIGTERM arrives still gets its whole answer when it
    finishes within the grace period; new connections are refused meanwhile."""
    assert not missing_clis()
    server = ClinvkServer(model_double.url, tmp_path, shutdown_grace_secs=60).start()
    try:
        model_double.set(words=20)
        model_double.hold_after(1)  # one word, then the rest waits until this test says so
        answer: dict = {}
        started = threading.Event()

        def client() -> None:
            with httpx.stream("POST", server.url + "/api/v1/prompt", timeout=60, json={
                "backend": "claude", "prompt": "finish me", "output_format": "stream-json",
            }) as r:
                lines = []
                for line in r.iter_lines():
                    if line:
                        lines.append(json.loads(line))
                        if lines[-1]["type"] == "delta":
                            started.set()
                answer["status"] = r.status_code
                answer["lines"] = lines

        thread = threading.Thread(target=client, daemon=True)
        thread.start()
        assert started.wait(30), "the CLI never started streaming"
        server.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + SETTLE_SECS  # a hang guard only
        while True:  # until the server stops taking connections
            try:
                httpx.get(server.url + "/health", timeout=2)
            except httpx.ConnectError:
                break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the server still takes new connections"
            time.sleep(0.05)
        assert thread.is_alive() and "status" not in answer  # the answer is still held
        model_double.release()
        thread.join(SETTLE_SECS)
        assert not thread.is_alive(), "the in-flight answer never finished"
        assert answer["status"] == 200
        assert answer["lines"][-1]["type"] == "done"
        text = "".join(x["content"].get("text", "") for x in answer["lines"]
                       if x["type"] == "delta")
        assert text.split() == [f"w{i}" for i in range(20)]
        assert server.process.wait(SETTLE_SECS) is not None
        assert server.wait_no_cli() == []
    finally:
        server.stop(signal.SIGKILL)


def test_metrics_count_real_cli_runs_and_live_processes(model_double, tmp_path):
    """With metrics on, a real CLI run is counted with its tokens, and the live-process
    gauge shows the CLI while it runs."""
    from prometheus_client.parser import text_string_to_metric_families

    assert not missing_clis()
    server = ClinvkServer(model_double.url, tmp_path, metrics_enabled=True).start()

    def scrape() -> dict:
        text = httpx.get(server.url + "/metrics").text
        return {(s.name, tuple(sorted(s.labels.items()))): s.value
                for f in text_string_to_metric_families(text) for s in f.samples}

    try:
        model_double.hold_after(1)  # the CLI stays mid-answer until the gauge was seen
        done = threading.Event()

        def client() -> None:
            httpx.post(server.url + "/api/v1/prompt", timeout=60,
                       json={"backend": "gemini", "prompt": "count me"})
            done.set()

        threading.Thread(target=client, daemon=True).start()
        deadline = time.monotonic() + SETTLE_SECS  # a hang guard only
        while scrape().get(("clinvk_backend_processes", (("backend", "gemini"),)), 0) < 1:
            assert time.monotonic() < deadline, "the live CLI never showed in /metrics"
            time.sleep(0.1)
        model_double.release()
        assert done.wait(60)
        got = scrape()
        assert got[("clinvk_backend_runs_total", (("backend", "gemini"),))] == 1
        assert got[("clinvk_backend_processes", (("backend", "gemini"),))] == 0
        assert got[("clinvk_backend_tokens_total", (("backend", "gemini"), ("kind", "output")))] > 0
    finally:
        server.stop()

