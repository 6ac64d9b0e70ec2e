"""`clinvk mcp` as a command (stdio and HTTP subprocesses), its settings (flags >
CLINVK_MCP_* > the `mcp:` section > defaults) and `server.mcp_enabled` on `clinvk serve`."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml
from mcp import Client, StdioServerParameters
from starlette.testclient import TestClient

from clinvk.adapters.config.yaml_config import ConfigError, load_config
from clinvk.domain.config import Config, ServerConfig
from clinvk.entrypoints.server import build_app
from tests.support.mcp import TOOL_NAMES
from tests.support.server import free_port

#: Only a guard against a server that never starts.
START_GUARD_SECS = 60


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    """A config whose three backends 'run' the Python interpreter (dry runs never start it)."""
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({
        "server": {"default_workdir": str(tmp_path)},
        "backends": {name: {"command": sys.executable} for name in ("claude", "codex", "gemini")},
    }))
    return path


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLINVK_")}
    return {**env, "CLINVK_HOME": str(tmp_path / "home"), **extra}


@pytest.mark.anyio
async def test_stdio_command_serves_the_tools(config_file, tmp_path):
    """`clinvk mcp` (stdio by default) spawned by the SDK lists the tools and answers a
    dry-run prompt; its logs stay off stdout, which carries only the protocol."""
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "clinvk.entrypoints.cli", "mcp", "--config", str(config_file)],
        env=_env(tmp_path), cwd=str(tmp_path))
    async with Client(params) as client:
        assert [t.name for t in (await client.list_tools()).tools] == TOOL_NAMES
        result = await client.call_tool("clinvk_prompt", {
            "backend": "claude", "prompt": "hi", "dry_run": True, "ephemeral": True})
    assert result.structured_content["output"].startswith(f"Would execute: {sys.executable}")


@pytest.mark.parametrize("source", ["pipe", "file"])
def test_stdio_answers_piped_requests_then_exits(config_file, tmp_path, source):
    """Requests piped in (or redirected from a file) are all answered before the server
    exits at the end of input."""
    requests = b"\n".join([
        b'{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}',
        b'{"jsonrpc":"2.0","method":"notifications/initialized"}',
        (b'{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"clinvk_prompt",'
         b'"arguments":{"backend":"codex","prompt":"x","dry_run":true,"ephemeral":true}}}'),
    ]) + b"\n"
    given = tmp_path / "requests.jsonl"
    given.write_bytes(requests)
    with open(given, "rb") as file:
        stdin = {"input": requests} if source == "pipe" else {"stdin": file}
        done = subprocess.run(
            [sys.executable, "-m", "clinvk.entrypoints.cli", "mcp", "--config",
             str(config_file)],
            capture_output=True, env=_env(tmp_path), cwd=tmp_path,
            timeout=START_GUARD_SECS, check=False, **stdin)
    assert done.returncode == 0, done.stderr
    answers = [yaml.safe_load(line) for line in done.stdout.splitlines()]
    assert [a["id"] for a in answers] == [1, 2]
    assert answers[0]["result"]["protocolVersion"] == "2024-11-05"
    assert answers[1]["result"]["structuredContent"]["backend"] == "codex"


def test_http_command_with_path_health_and_env_port(config_file, tmp_path):
    """`clinvk mcp --transport http --path /tools --expose-health`, its port from
    CLINVK_MCP_PORT: the endpoint answers at /tools, /health is served, /mcp is not."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "clinvk.entrypoints.cli", "mcp", "--config", str(config_file),
         "--transport", "http", "--path", "/tools", "--expose-health"],
        env=_env(tmp_path, CLINVK_MCP_PORT=str(port)), cwd=tmp_path,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_GUARD_SECS
        while True:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            try:
                health = httpx.get(url + "/health", timeout=5)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, "clinvk mcp did not start"
                time.sleep(0.1)
        assert health.json()["status"] == "ok"
        listed = httpx.post(url + "/tools", json={"jsonrpc": "2.0", "id": 1,
                                                 "method": "tools/list"})
        assert [t["name"] for t in listed.json()["result"]["tools"]] == TOOL_NAMES
        assert httpx.post(url + "/mcp", json={"jsonrpc": "2.0", "id": 1,
                                              "method": "ping"}).status_code == 404
    finally:
        proc.terminate()
        proc.wait(START_GUARD_SECS)
        if proc.stderr:
            proc.stderr.close()


def test_settings_precedence(tmp_path, monkeypatch):
    """mcp settings: flags over CLINVK_MCP_* over the `mcp:` section over the defaults."""
    monkeypatch.setenv("HOME", str(tmp_path))
    assert load_config(environ={}).mcp.port == 8081
    path = tmp_path / "c.yaml"
    path.write_text("mcp:\n  port: 9000\n  transport: http\n  expose_health: false\n")
    assert load_config(str(path), environ={}).mcp.port == 9000
    env = {"CLINVK_MCP_PORT": "9100", "CLINVK_MCP_EXPOSE_HEALTH": "true",
           "CLINVK_MCP_HTTP_PATH": "/x", "CLINVK_MCP_HOST": "0.0.0.0"}
    config = load_config(str(path), environ=env)
    assert (config.mcp.port, config.mcp.expose_health, config.mcp.http_path,
            config.mcp.host, config.mcp.transport) == (9100, True, "/x", "0.0.0.0", "http")
    flags = load_config(str(path), environ=env, overrides={"mcp.port": 9200,
                                                           "mcp.transport": "stdio"})
    assert (flags.mcp.port, flags.mcp.transport) == (9200, "stdio")
    with pytest.raises(ConfigError, match="CLINVK_MCP_PORT"):
        load_config(str(path), environ={"CLINVK_MCP_PORT": "eighty"})
    with pytest.raises(ConfigError, match="transport"):
        load_config(str(path), environ={"CLINVK_MCP_TRANSPORT": "carrier-pigeon"})


@pytest.mark.parametrize("enabled", [True, False])
def test_serve_mounts_mcp_unless_disabled(tmp_path, enabled):
    """`clinvk serve` answers MCP at /mcp by default; `server.mcp_enabled: false` removes it."""
    config = Config(home=str(tmp_path), server=ServerConfig(default_workdir=str(tmp_path),
                                                            mcp_enabled=enabled))
    _, app = build_app(config)
    with TestClient(app) as client:
        r = client.post("/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "ping"})
    assert r.status_code == (200 if enabled else 404)
