"""The deployment recipe (deploy/compose.yaml, deploy/Caddyfile, the Dockerfile's command)
read as data, and a real Caddy running deploy/Caddyfile, so a test can start the recipe's
topology from the recipe's own settings on a machine without a container engine.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "deploy" / "compose.yaml"
CADDYFILE = ROOT / "deploy" / "Caddyfile"
DOCKERFILE = ROOT / "Dockerfile"

_VARIABLE = re.compile(r"\$\{(?P<name>\w+)(?:(?P<op>:\?|:-)(?P<arg>[^}]*))?\}")


def interpolate(value: str, environ: dict[str, str]) -> str:
    """Compose's `${VAR}`, `${VAR:-default}` and `${VAR:?error}` (an unset or empty
    required variable is an error, as `docker compose` makes it)."""

    def one(match: re.Match[str]) -> str:
        name, op, arg = match["name"], match["op"], match["arg"]
        got = environ.get(name, "")
        if got:
            return got
        if op == ":?":
            raise KeyError(f"{name}: {arg}")
        return arg if op == ":-" else ""

    return _VARIABLE.sub(one, value)


@dataclass(frozen=True)
class Service:
    """One compose service as a test uses it."""

    name: str
    raw: dict

    def environment(self, environ: dict[str, str]) -> dict[str, str]:
        """Its environment with compose's interpolation done against `environ`."""
        env = self.raw.get("environment") or {}
        if isinstance(env, list):
            env = dict(item.split("=", 1) for item in env)
        return {k: interpolate(str(v), environ) for k, v in env.items()}

    def volumes(self) -> dict[str, str]:
        """Mount path -> named volume (or host path)."""
        mounts = {}
        for entry in self.raw.get("volumes") or []:
            source, target = entry.split(":")[:2]
            mounts[target] = source
        return mounts


def compose_services() -> dict[str, Service]:
    """deploy/compose.yaml's services (YAML anchors and merge keys resolved)."""
    data = yaml.safe_load(COMPOSE.read_text())
    return {name: Service(name, raw) for name, raw in data["services"].items()}


def dockerfile_command() -> list[str]:
    """The image's CMD (the arguments after the `clinvk` entrypoint)."""
    for line in DOCKERFILE.read_text().splitlines():
        if line.startswith("CMD "):
            return json.loads(line[4:])
    raise AssertionError("the Dockerfile has no CMD")


def caddyfile_default(name: str) -> str:
    """The default the Caddyfile gives the environment placeholder `{$name:default}`."""
    match = re.search(r"\{\$" + re.escape(name) + r":([^}]*)\}", CADDYFILE.read_text())
    if match is None:
        raise AssertionError(f"deploy/Caddyfile has no {{${name}:...}} placeholder")
    return match[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Caddy:
    """`caddy run` on deploy/Caddyfile itself; only its environment placeholders are set
    (site, ports, upstreams, no admin endpoint). Its data (the local CA) stays in `folder`."""

    def __init__(self, folder: Path, *, upstreams: list[str], site: str = "localhost") -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.https_port = _free_port()
        self.site = site
        self.url = f"https://{site}:{self.https_port}"
        self.env = {
            "CLINVK_PROXY_SITE": site,
            "CLINVK_PROXY_UPSTREAMS": " ".join(upstreams),
            "CLINVK_PROXY_HTTPS_PORT": str(self.https_port),
            "CLINVK_PROXY_HTTP_PORT": str(_free_port()),
            "CLINVK_PROXY_ADMIN": "off",
        }
        self.log_path = folder / "caddy.log"
        self.process: subprocess.Popen | None = None

    @property
    def root_certificate(self) -> Path:
        """Caddy's local CA root, which signs the site's certificate (`tls internal`)."""
        return self.folder / "data" / "caddy" / "pki" / "authorities" / "local" / "root.crt"

    def ssl_context(self) -> ssl.SSLContext:
        """Verifies the proxy's certificate against Caddy's own root, as a client given it."""
        return ssl.create_default_context(cafile=str(self.root_certificate))

    def start(self) -> Caddy:
        caddy = shutil.which("caddy")
        if caddy is None:
            raise RuntimeError("caddy is not installed; scripts/test.sh installs it (apt)")
        env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": str(self.folder),
            "XDG_DATA_HOME": str(self.folder / "data"),
            "XDG_CONFIG_HOME": str(self.folder / "config"),
            **self.env,
        }
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - the process's; closed by stop()
        self.process = subprocess.Popen(
            [caddy, "run", "--config", str(CADDYFILE), "--adapter", "caddyfile"],
            env=env, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60  # a guard against a hang, not a speed check
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"caddy exited: {self.log_path.read_text()}")
            if self.root_certificate.exists() and self._answers():
                return self
            time.sleep(0.1)
        raise RuntimeError(f"caddy did not start: {self.log_path.read_text()}")

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.https_port), timeout=2) as raw, \
                    self.ssl_context().wrap_socket(raw, server_hostname=self.site):
                return True
        except (OSError, ssl.SSLError):
            return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process is not None:
            self._log.close()
