"""The real Claude Code as a client of clinvk with its own tools: its tools reach the
backend claude's model through the bridge, the model's call comes back to Claude Code,
which runs it where it runs (here: Read of a file only the client's folder holds), and its
result reaches the backend's model."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.support.clis import cli_path
from tests.support.model_double import generation_requests

pytestmark = pytest.mark.real

GUARD_SECS = 240


def test_claude_code_runs_the_read_its_backend_model_asked_for(clinvk_server, model_double,
                                                              tmp_path: Path):
    """The backend's model calls mcp__client__Read on a file in the client's folder;
    Claude Code reads it and the file's text, through clinvk, is the model's answer."""
    home, cwd = tmp_path / "client-home", tmp_path / "client-work"
    home.mkdir()
    cwd.mkdir()
    notes = cwd / "notes.txt"
    notes.write_text("the secret is 42\n")
    env = {
        "PATH": os.environ["PATH"], "HOME": str(home),
        "CLAUDE_CONFIG_DIR": str(home / ".claude"), "TMPDIR": str(tmp_path),
        "ANTHROPIC_BASE_URL": clinvk_server.url + "/anthropic",
        "ANTHROPIC_API_KEY": "not-needed", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_AUTOUPDATER": "1", "CLAUDE_CODE_MAX_RETRIES": "0",
    }
    model_double.set(tool_use={"name": "mcp__client__Read",
                               "input": {"file_path": str(notes)}})
    done = subprocess.run([str(cli_path("claude")), "-p", "what does notes.txt say?"],
                          check=False, env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=GUARD_SECS)
    assert done.returncode == 0, (done.stdout, done.stderr[-2000:])
    assert "the secret is 42" in done.stdout
    # The backend claude's model was offered Claude Code's tools, by the bridge's names,
    # and none of the backend's own.
    offered = [c["body"].get("tools") or [] for c in generation_requests(model_double.requests())
               if c["api"] == "anthropic"]
    names = {t["name"] for tools in offered for t in tools}
    assert "mcp__client__Read" in names and "mcp__client__Bash" in names
    assert not {"Read", "Bash", "Write"} & names
    assert clinvk_server.wait_no_cli() == []
