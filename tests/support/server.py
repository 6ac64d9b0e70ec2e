"""A real `clinvk serve` process, configured to run the real CLIs against the model double."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import yaml

from tests.support.clis import backend_settings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def processes_with_env(marker: str) -> list[int]:
    """Pids of live processes whose environment holds `marker` (our CLIs carry one)."""
    needle = marker.encode()
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                if needle in f.read():
                    with open(f"/proc/{entry}/stat", "rb") as s:
                        if s.read().split(b") ", 1)[1][:1] == b"Z":
                            continue  # a zombie holds no resources
                    pids.append(int(entry))
        except OSError:
            continue
    return pids


#: Seconds the helpers wait for something that normally takes well under one (a CLI gone
#: after a kill, a server stopping): only a guard against a hang, never a speed check.
#: Tests that prove a kill keep the CLI's answer from ever ending by itself (a held or hung
#: model call) and the run's deadline (RUN_DEADLINE_SECS) further off than this.
SETTLE_SECS = 30

#: The server's request_timeout_secs: far beyond any normal run, even a 3-step chain on a
#: busy machine. Tests of the deadline itself start a server with a short one.
RUN_DEADLINE_SECS = 90


class ClinvkServer:
    """`clinvk serve` in a subprocess; every CLI it starts carries `CLINVK_TEST_MARK`."""

    def __init__(self, double_url: str, scratch: Path, *, env: dict[str, str] | None = None,
                 **server: object) -> None:
        self.scratch = Path(scratch)
        #: Extra environment of the server process (e.g. CLINVK_API_KEYS).
        self.env = dict(env or {})
        self.workdir = self.scratch / "work"
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.home = self.scratch / "clinvk-home"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.mark = f"CLINVK_TEST_MARK=clinvk-{uuid.uuid4().hex}"
        key, value = self.mark.split("=", 1)
        backends = backend_settings(double_url, self.scratch / "clis")
        for settings in backends.values():
            settings["env"][key] = value
        config = {
            "server": {
                "host": "127.0.0.1",
                "port": self.port,
                "request_timeout_secs": RUN_DEADLINE_SECS,
                "heartbeat_secs": 1,
                "default_workdir": str(self.workdir),
                **server,
            },
            "backends": {name: {k: v for k, v in s.items() if v is not None}
                         for name, s in backends.items()},
        }
        self.config_path = self.scratch / "config.yaml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.log_path = self.scratch / "server.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> ClinvkServer:
        env = {**os.environ, "CLINVK_HOME": str(self.home)}
        env.pop("CLINVK_API_KEYS", None)
        env.update(self.env)
        self._log = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "clinvk.entrypoints.cli", "serve",
             "--config", str(self.config_path)],
            env=env, stdout=self._log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"clinvk serve exited: {self.log_path.read_text()}")
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code in (200, 503):
                    return self
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError(f"clinvk serve did not start: {self.log_path.read_text()}")

    def cli_pids(self) -> list[int]:
        """Live CLI processes this server started."""
        return processes_with_env(self.mark)

    def wait_no_cli(self, seconds: float = SETTLE_SECS) -> list[int]:
        """Wait up to `seconds` for every CLI process to be gone; return what is left."""
        deadline = time.monotonic() + seconds
        while True:
            left = self.cli_pids()
            if not left or time.monotonic() > deadline:
                return left
            time.sleep(0.05)

    def stop(self, sig: int = signal.SIGTERM) -> int | None:
        """Send `sig` and wait for the exit; SIGKILL after SETTLE_SECS (then the exit code is
        -SIGKILL, so a test can tell a server that stopped by itself from one that was
        killed)."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(SETTLE_SECS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return self.process.returncode
