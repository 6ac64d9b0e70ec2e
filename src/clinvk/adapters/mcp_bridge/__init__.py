"""The client-tools bridge: an MCP server per run, offering exactly a request's tools to
its CLI, on a private loopback listener (see bridge.py)."""

from clinvk.adapters.mcp_bridge.bridge import LoopbackToolBridge

__all__ = ["LoopbackToolBridge"]
