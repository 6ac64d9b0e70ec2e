"""A real agent CLI as the MCP client of clinvk (stdio, and HTTP on `clinvk serve`):
`claude -p` with clinvk in its `--mcp-config`, and `gemini -p` with clinvk in its
settings.json. The client's model (the double) asks for `clinvk_prompt` on another backend;
clinvk runs that real CLI, whose model (the double) answers; the answer goes back to the
client as the tool result and ends up in the client's final text. The client settings are
the recipes in docs/mcp.md."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.clis import backend_settings, cli_path, missing_clis
from tests.support.model_double import generation_requests, user_texts
from tests.support.server import ClinvkServer

pytestmark = pytest.mark.real

#: Only a guard against a hung client; the runs take seconds.
GUARD_SECS = 240
TOOL = "mcp__clinvk__clinvk_prompt"
#: How gemini names clinvk's tool.
GEMINI_TOOL = "mcp_clinvk_clinvk_prompt"


@pytest.fixture
def configured(model_double, tmp_path) -> ClinvkServer:
    assert not missing_clis(), f"backend CLIs not installed: {missing_clis()}"
    return ClinvkServer(model_double.url, tmp_path)


def _server_entry(transport: str, configured: ClinvkServer, client: str = "claude") -> dict:
    if transport == "http":
        configured.start()
        if client == "gemini":
            return {"httpUrl": configured.url + "/mcp", "timeout": 600000, "trust": True}
        return {"type": "http", "url": configured.url + "/mcp"}
    return {
        "command": sys.executable,
        "args": ["-m", "clinvk.entrypoints.cli", "mcp", "--config",
                 str(configured.config_path)],
        "env": {"CLINVK_HOME": str(configured.home), "PATH": os.environ["PATH"]},
        **({"timeout": 600000, "trust": True} if client == "gemini" else {}),
    }


@pytest.mark.parametrize("transport", ["stdio", "http"])
def test_claude_asks_codex_through_clinvk(configured, model_double, tmp_path, transport):
    """claude calls clinvk_prompt (backend codex) as its model asked; codex's answer,
    through clinvk, is claude's final text, and codex (not claude) got the prompt."""
    model_double.set(tool_use={"name": TOOL, "input": {
        "backend": "codex", "prompt": "second opinion on foo()", "ephemeral": True}})
    model_double.reply_for(openai="codex says: foo() is fine")
    try:
        config = tmp_path / "mcp.json"
        config.write_text(json.dumps({"mcpServers": {
            "clinvk": _server_entry(transport, configured)}}))
        client = backend_settings(model_double.url, tmp_path / "client")["claude"]
        cwd = tmp_path / "client-work"
        cwd.mkdir()
        done = subprocess.run(
            [str(cli_path("claude")), "-p", "ask codex about foo()",
             "--mcp-config", str(config), "--strict-mcp-config",
             "--allowedTools", TOOL, "--output-format", "text"],
            # Wait for clinvk to connect before the first turn (claude -p otherwise starts
            # while MCP servers still connect, and its first turn offers no MCP tools).
            # MCP_TIMEOUT: a busy machine may need more than claude's default to start
            # clinvk (a Python process) and list its tools.
            env={"PATH": os.environ["PATH"], "TMPDIR": str(tmp_path),
                 "MCP_CONNECTION_NONBLOCKING": "0", "MCP_TIMEOUT": "120000",
                 **client["env"]},
            cwd=cwd, capture_output=True, text=True, timeout=GUARD_SECS, check=False)
    finally:
        configured.stop()
    assert done.returncode == 0, (done.stdout, done.stderr[-2000:])
    # The double answers with the tool result claude sent it: clinvk_prompt's result.
    assert done.stdout.startswith("{"), (done.stdout, done.stderr[-2000:])
    answer = json.loads(done.stdout)
    assert (answer["backend"], answer["output"]) == ("codex", "codex says: foo() is fine")
    calls = generation_requests(model_double.requests())
    codex_calls = [c for c in calls if c["api"] == "openai"]
    assert codex_calls, "codex never called the model double"
    assert any(t.endswith("second opinion on foo()") for t in user_texts(codex_calls[-1]))


@pytest.mark.parametrize("transport", ["stdio", "http"])
def test_gemini_asks_codex_through_clinvk(configured, model_double, tmp_path, transport):
    """gemini (clinvk in its settings.json, trusted) calls clinvk_prompt on codex as its
    model asked; codex's answer, through clinvk, is in gemini's final text."""
    model_double.set(tool_use={"name": GEMINI_TOOL, "input": {
        "backend": "codex", "prompt": "second opinion on bar()", "ephemeral": True}})
    model_double.reply_for(openai="codex says: bar() leaks")
    try:
        client = backend_settings(model_double.url, tmp_path / "client")["gemini"]
        settings_file = Path(client["env"]["GEMINI_CLI_HOME"]) / ".gemini" / "settings.json"
        settings = json.loads(settings_file.read_text())
        settings["mcpServers"] = {"clinvk": _server_entry(transport, configured, "gemini")}
        settings_file.write_text(json.dumps(settings))
        cwd = tmp_path / "client-work"
        cwd.mkdir()
        done = subprocess.run(
            [str(cli_path("gemini")), "-p", "ask codex about bar()",
             "--model", client["model"], "--output-format", "text"],
            env={"PATH": os.environ["PATH"], **client["env"]},
            cwd=cwd, capture_output=True, text=True, timeout=GUARD_SECS, check=False)
    finally:
        configured.stop()
    assert done.returncode == 0, (done.stdout, done.stderr[-2000:])
    # The double answers with the function response gemini sent it, which holds
    # clinvk_prompt's text (gemini wraps it in <untrusted_context> tags).
    assert done.stdout.startswith("{"), (done.stdout, done.stderr[-2000:])
    relayed = json.loads(done.stdout)["output"]
    answer = json.loads(relayed[relayed.index("{"):relayed.rindex("}") + 1])
    assert (answer["backend"], answer["output"]) == ("codex", "codex says: bar() leaks")
    calls = generation_requests(model_double.requests())
    codex_calls = [c for c in calls if c["api"] == "openai"]
    assert codex_calls, "codex never called the model double"
    assert any(t.endswith("second opinion on bar()") for t in user_texts(codex_calls[-1]))
