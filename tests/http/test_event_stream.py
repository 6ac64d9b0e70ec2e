"""EventStreamResponse's ending: a producer's last chunk ends the body in the same write."""

from __future__ import annotations

import anyio
import pytest

from clinvk.adapters.http.streaming import Emit, EventStreamResponse

pytestmark = pytest.mark.anyio


async def _messages(producer) -> list[dict]:
    sent: list[dict] = []
    disconnect = anyio.Event()

    async def receive() -> dict:
        await disconnect.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    response = EventStreamResponse(producer, media_type="text/event-stream",
                                   opening=lambda: b"open;")
    await response({"type": "http"}, receive, send)
    return sent


async def test_a_last_chunk_ends_the_body_and_later_ones_are_dropped():
    """`emit(chunk, last=True)` sends the chunk as the body's end: nothing is written after
    it, neither a later emit nor the closing empty chunk."""

    async def produce(emit: Emit, response: EventStreamResponse) -> None:
        await emit(b"a;")
        await emit(b"b;", last=True)
        await emit(b"dropped")

    sent = await _messages(produce)
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body",
                                         "http.response.body"]
    assert [(m["body"], m["more_body"]) for m in sent[1:]] == [(b"open;a;", True),
                                                               (b"b;", False)]


async def test_without_a_last_chunk_the_body_is_closed_after_the_producer():
    """A producer that never says `last` gets its body closed by an empty final chunk."""

    async def produce(emit: Emit, response: EventStreamResponse) -> None:
        await emit(b"a;")

    sent = await _messages(produce)
    assert [(m["body"], m["more_body"]) for m in sent[1:]] == [(b"open;a;", True),
                                                               (b"", False)]
