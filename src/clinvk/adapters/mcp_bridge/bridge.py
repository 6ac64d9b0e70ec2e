"""The `ToolBridge` adapter: MCP over streamable HTTP on a private loopback listener.

Why HTTP on its own loopback port rather than stdio or a route of the public server: the
run's state (its waiting calls) lives in this process, so a stdio server would be a helper
process relaying to it anyway; the public server may listen on any address behind API
keys, rate limits and timeouts that must not apply to a CLI waiting minutes for a result,
and its port is not always known (port 0, a socket from a supervisor). The listener starts
with the first run that offers tools, binds 127.0.0.1 on a free port, and serves each run
at its own unguessable path (`/mcp/<256-bit token>`) that stops working when the run ends.
"""

from __future__ import annotations

import secrets
import socket
from collections.abc import Sequence

import anyio
import uvicorn

from clinvk.adapters.mcp_bridge.channel import BridgeChannel
from clinvk.adapters.mcp_bridge.endpoint import BridgeEndpoint
from clinvk.domain.tools import ClientTool


class _Channel(BridgeChannel):
    def __init__(self, bridge: LoopbackToolBridge, token: str, url: str,
                 tools: Sequence[ClientTool]) -> None:
        super().__init__(token, url, tools)
        self._bridge = bridge

    def close(self) -> None:
        super().close()
        self._bridge.forget(self.token)


class LoopbackToolBridge:
    """Opens a channel per run; serves them all on one loopback listener."""

    def __init__(self, *, host: str = "127.0.0.1", heartbeat_secs: float = 15) -> None:
        self._host = host
        self._channels: dict[str, BridgeChannel] = {}
        self._endpoint = BridgeEndpoint(self._channels.get, heartbeat_secs=heartbeat_secs)
        self._server: uvicorn.Server | None = None
        self._lock = anyio.Lock()
        self.base_url: str | None = None

    def open_channels(self) -> int:
        """Channels (runs with client tools) open now."""
        return len(self._channels)

    async def open(self, tools: Sequence[ClientTool]) -> BridgeChannel:
        """A fresh channel offering `tools` at its own path."""
        await self._start()
        token = secrets.token_urlsafe(32)
        channel = _Channel(self, token, f"{self.base_url}/mcp/{token}", tools)
        self._channels[token] = channel
        return channel

    def forget(self, token: str) -> None:
        """Stop serving a channel's path; with no channel left, stop listening (the next
        run with tools starts the listener again)."""
        self._channels.pop(token, None)
        if not self._channels:
            self._stop_listening()

    def _stop_listening(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        for connection in list(server.server_state.connections):
            connection.shutdown()
        for listener in server.servers:
            listener.close()

    async def _start(self) -> None:
        async with self._lock:
            if self._server is not None:
                return
            # IPPROTO_TCP, not 0: asyncio turns Nagle off (TCP_NODELAY) only on sockets
            # that say so; without it a response's body waits for the ACK of its headers
            # (the peer's delayed ACK: 40 ms on Linux).
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
            sock.bind((self._host, 0))
            config = uvicorn.Config(
                self._endpoint, lifespan="off", log_config=None, access_log=False,
                timeout_keep_alive=60,
            )
            config.load()
            server = uvicorn.Server(config)
            server.lifespan = config.lifespan_class(config)
            await server.startup(sockets=[sock])
            self._server = server
            self.base_url = f"http://{self._host}:{sock.getsockname()[1]}"

    async def close(self) -> None:
        """End every channel and the listener."""
        for channel in list(self._channels.values()):
            channel.close()
        self._stop_listening()
