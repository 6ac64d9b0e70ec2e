"""One run's channel: the CLI's tool calls come out, the client's results go back in."""

from __future__ import annotations

import math
import secrets
from collections.abc import Awaitable, Callable, Sequence

import anyio

from clinvk.domain.tools import ClientTool, ToolCall, ToolOutcome

#: What a call gets when its run ended before the client answered it.
GONE = ToolOutcome(call_id="", output="the client did not answer this tool call", is_error=True)


class ClosedChannel(Exception):
    """The channel ended: no more calls are taken."""


class BridgeChannel:
    """The `ToolChannel` of one run: the tools it offers and its waiting calls."""

    def __init__(self, token: str, url: str, tools: Sequence[ClientTool]) -> None:
        self.token = token
        self.url = url
        self.tools = {t.name: t for t in tools}
        self.closed = False
        self._send, self._receive = anyio.create_memory_object_stream[ToolCall](math.inf)
        self._waiting: dict[str, tuple[anyio.Event, list[ToolOutcome]]] = {}

    async def next_call(self) -> ToolCall:
        """The CLI's next call."""
        return await self._receive.receive()

    def answer(self, outcome: ToolOutcome) -> bool:
        """Wake the call waiting for this result."""
        waiter = self._waiting.pop(outcome.call_id, None)
        if waiter is None:
            return False
        event, box = waiter
        box.append(outcome)
        event.set()
        return True

    def close(self) -> None:
        """Fail every waiting call; take no more."""
        self.closed = True
        for event, box in self._waiting.values():
            box.append(GONE)
            event.set()
        self._waiting.clear()
        self._send.close()
        self._receive.close()

    async def call(self, name: str, arguments: dict, *,
                   idle: Callable[[], Awaitable[None]] | None = None,
                   idle_secs: float = math.inf) -> ToolOutcome:
        """A call from the CLI: queue it for the client and wait for the result, awaiting
        `idle` after each `idle_secs` without one (the endpoint's heartbeat: a timer in
        this task rather than a task of its own, so a quick answer costs no task)."""
        if self.closed:
            raise ClosedChannel
        call = ToolCall(id="call_" + secrets.token_hex(12), name=name, arguments=arguments)
        event, box = anyio.Event(), []
        self._waiting[call.id] = (event, box)
        try:
            self._send.send_nowait(call)
            while not event.is_set():
                with anyio.move_on_after(idle_secs):
                    await event.wait()
                if idle is not None and not event.is_set():
                    await idle()
        finally:
            self._waiting.pop(call.id, None)
        return box[0]
