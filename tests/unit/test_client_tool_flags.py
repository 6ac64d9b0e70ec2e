"""How each CLI is given the client-tools bridge (argv, environment, settings)."""

from __future__ import annotations

import json

from clinvk.adapters.backends.claude import bridge_options
from clinvk.adapters.backends.codex import bridge_flags
from clinvk.adapters.backends.gemini import bridge_settings
from clinvk.domain.tools import BridgeSpec

SPEC = BridgeSpec(url="http://127.0.0.1:5/mcp/tok", names=("get_weather", "get_time"),
                  result_timeout_secs=300)


def test_claude_gets_only_the_bridge_and_no_builtin_tools():
    """claude: the bridge as its only MCP server (http), its tools allowed, `--tools ""`
    (no built-in tools), MCP_TOOL_TIMEOUT above the result wait."""
    argv, env = bridge_options(SPEC)
    config = json.loads(argv[argv.index("--mcp-config") + 1])
    assert config == {"mcpServers": {"client": {"type": "http", "url": SPEC.url}}}
    assert "--strict-mcp-config" in argv
    assert argv[argv.index("--allowedTools") + 1] == "mcp__client"
    assert argv[argv.index("--tools") + 1] == ""
    assert int(env["MCP_TOOL_TIMEOUT"]) > 300_000
    assert env["MCP_CONNECTION_NONBLOCKING"] == "false"  # its first call waits for the bridge


def test_claude_keeps_its_tools_when_asked():
    """With builtin_tools, `--tools` is not restricted."""
    argv, _ = bridge_options(BridgeSpec(url="u", names=("t",), builtin_tools=True))
    assert "--tools" not in argv


def test_codex_gets_the_bridge_approved_and_its_own_tools_off():
    """codex: mcp_servers.client (url, approve, tool timeout), shell/exec/images/agents/
    goals features disabled, web search off."""
    argv = bridge_flags(SPEC)
    settings = [argv[i + 1] for i, a in enumerate(argv) if a == "-c"]
    assert f'mcp_servers.client.url="{SPEC.url}"' in settings
    assert 'mcp_servers.client.default_tools_approval_mode="approve"' in settings
    assert "mcp_servers.client.tool_timeout_sec=360" in settings
    assert 'web_search="disabled"' in settings
    disabled = [argv[i + 1] for i, a in enumerate(argv) if a == "--disable"]
    assert {"shell_tool", "unified_exec", "view_image"} <= set(disabled)
    kept = bridge_flags(BridgeSpec(url="u", names=("t",), builtin_tools=True))
    assert "--disable" not in kept


def test_gemini_gets_a_trusted_bridge_and_only_its_tools():
    """gemini: a trusted httpUrl server, the only MCP server allowed, tools.core listing
    the bridge's tools by gemini's names."""
    settings = bridge_settings(SPEC)
    assert settings["mcpServers"] == {"client": {"httpUrl": SPEC.url, "trust": True,
                                                 "timeout": 360_000}}
    assert settings["mcp"] == {"allowed": ["client"]}
    assert settings["tools"] == {"core": ["mcp_client_get_weather", "mcp_client_get_time"]}
    assert "tools" not in bridge_settings(BridgeSpec(url="u", names=("t",),
                                                     builtin_tools=True))


def test_runs_with_client_tools_never_take_a_warm_or_hot_process():
    """A run's bridge URL is its own, so no pooled (or hot) process can serve it."""
    from clinvk.adapters.backends.claude import ClaudeBackend
    from clinvk.adapters.backends.codex import CodexBackend
    from clinvk.domain.config import BackendConfig
    from clinvk.domain.models import RunSpec

    spec = RunSpec(backend="claude", prompt="p", workdir="/tmp", tools=SPEC)
    assert ClaudeBackend().warm_invocation(spec, BackendConfig(), "claude", None) is None
    assert ClaudeBackend().hot_invocation(spec, BackendConfig(), "claude", None) is None
    codex = RunSpec(backend="codex", prompt="p", workdir="/tmp", tools=SPEC)
    assert CodexBackend().warm_invocation(codex, BackendConfig(), "codex", None) is None
    plain = RunSpec(backend="claude", prompt="p", workdir="/tmp")
    assert ClaudeBackend().warm_invocation(plain, BackendConfig(), "claude", None) is not None


def test_codex_announces_an_mcp_tool_call_as_claude_names_it():
    """codex's item.started of an mcp_tool_call is a ToolUse named mcp__<server>__<tool>,
    so calls made together are answered together without waiting."""
    from clinvk.adapters.backends.codex import CodexBackend
    from clinvk.domain.config import BackendConfig
    from clinvk.domain.events import ToolUse
    from clinvk.domain.models import RunSpec

    spec = RunSpec(backend="codex", prompt="p", workdir="/tmp", tools=SPEC)
    decoder = CodexBackend().decoder(spec, BackendConfig())
    line = json.dumps({"type": "item.started", "item": {
        "id": "item_1", "type": "mcp_tool_call", "server": "client", "tool": "get_weather",
        "arguments": {"city": "Paris"}, "result": None, "error": None,
        "status": "in_progress"}}).encode()
    assert decoder.feed(line) == [ToolUse(name="mcp__client__get_weather",
                                          input={"city": "Paris"}, id="item_1")]
