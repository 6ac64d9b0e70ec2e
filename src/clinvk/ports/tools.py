"""Port: a run that may pause for the client's tool results (the bridge a CLI calls the
client's tools through)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from clinvk.domain.tools import ClientTool, ToolCall, ToolOutcome


class ToolChannel(Protocol):
    """One run's way to the client's tools: the CLI's calls come out, results go in."""

    #: The endpoint the CLI is given (its MCP server for this run).
    url: str

    async def next_call(self) -> ToolCall:
        """The CLI's next tool call (waits for it)."""
        ...

    def answer(self, outcome: ToolOutcome) -> bool:
        """Hand a result to the call waiting for it; False when no call has that id."""
        ...

    def close(self) -> None:
        """End the channel: waiting calls fail, the endpoint is gone."""
        ...


class ToolBridge(Protocol):
    """Opens a channel per run offering exactly the given tools."""

    async def open(self, tools: Sequence[ClientTool]) -> ToolChannel:
        """A fresh channel with its own unguessable endpoint."""
        ...

    async def close(self) -> None:
        """End every channel (server shutdown)."""
        ...


class Background(Protocol):
    """Runs work that outlives the request that started it (a parked run)."""

    def start(self, job: Callable[[], Awaitable[None]]) -> None:
        """Start `job` now; it runs until it returns or the server stops."""
        ...

    async def cancel_all(self) -> None:
        """End every job still running (server shutdown)."""
        ...
