"""The JSON-RPC lines of the CLIs' long-lived modes (codex app-server, gemini --acp): one
message per line, and the write side of a decoder that drives one turn over them."""

from __future__ import annotations

from typing import Any

import msgspec


def request(id: int, method: str, params: dict[str, Any]) -> bytes:
    """One request line."""
    message = {"jsonrpc": "2.0", "id": id, "method": method, "params": params}
    return msgspec.json.encode(message) + b"\n"


class Rpc(msgspec.Struct):
    """Any message read: a request or notification (`method`) or a response."""

    id: int | str | None = None
    method: str | None = None
    params: Any = None
    result: Any = None
    error: Any = None


decode = msgspec.json.Decoder(Rpc).decode


class TurnDriver:
    """What a one-turn decoder writes back (`replies`) and whether its turn ended."""

    def __init__(self) -> None:
        self._pending = b""
        self._done = False

    def replies(self) -> bytes:
        """Bytes to write now (the next request once the last was answered; answers to
        the CLI's own requests)."""
        out, self._pending = self._pending, b""
        return out

    @property
    def turn_done(self) -> bool:
        """Whether the turn ended (or could not start)."""
        return self._done
