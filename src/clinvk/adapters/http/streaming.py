"""HTTP plumbing shared by every dialect: disconnect-aware handlers and event streams."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol, TypeVar

import anyio
from starlette.requests import Request
from starlette.types import Receive, Scope, Send

T = TypeVar("T")



class Emit(Protocol):
    """Write one chunk of the body; the first call sends the status line and headers.
    `last=True` ends the body with this chunk (one write less than ending it after), and
    anything emitted after it is dropped."""

    def __call__(self, chunk: bytes, *, last: bool = False) -> Awaitable[None]: ...


class ClientDisconnected(Exception):
    """The client went away before the answer was ready."""


async def _wait_for_disconnect(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


async def until_disconnect(request: Request, work: Callable[[], Awaitable[T]]) -> T:
    """Run `work`, cancelling it when the client disconnects (uvicorn does not do this
    for non-streaming handlers, so a dropped client would otherwise leave the CLI running)."""
    result: list[T] = []
    failure: list[BaseException] = []
    disconnected = False

    async def watch(tg) -> None:
        nonlocal disconnected
        await _wait_for_disconnect(request.receive)
        disconnected = True
        tg.cancel_scope.cancel()

    # The work runs in this task (one task less per request); the watcher's cancel
    # reaches it all the same, as it runs inside the group's scope.
    async with anyio.create_task_group() as tg:
        tg.start_soon(watch, tg)
        try:
            result.append(await work())
        except Exception as exc:  # noqa: BLE001 - re-raised bare below, not grouped
            failure.append(exc)
        tg.cancel_scope.cancel()
    if failure:
        raise failure[0]
    if disconnected or not result:
        raise ClientDisconnected()
    return result[0]


class EventStreamResponse:
    """A streaming response whose `__call__` owns the task group: the producer writes
    chunks as the backend emits them, a heartbeat keeps quiet streams alive, and a
    disconnect listener cancels everything (which terminates the CLI).

    The status line and headers go out with the first chunk, so the producer can still
    set headers (e.g. the session id, the backend after a fallback) or fail with an
    ordinary error response before that. `opening` (optional) makes the bytes that must
    come first (a dialect's message start); it is called when the first chunk goes out,
    or when a heartbeat is due before the producer wrote anything, so a run that is
    silent for long still gets its heartbeats, and one that fails over to another backend
    within the first heartbeat interval still reports the backend that answered.
    """

    def __init__(
        self,
        producer: Callable[[Emit, EventStreamResponse], Awaitable[None]],
        *,
        media_type: str,
        heartbeat: bytes | None = None,
        heartbeat_secs: float | None = None,
        on_early_error: Callable[[BaseException], Any] | None = None,
        headers: Mapping[str, str] | None = None,
        opening: Callable[[], bytes] | None = None,
    ) -> None:
        self.producer = producer
        self.opening = opening
        self.media_type = media_type
        self.heartbeat = heartbeat
        self.heartbeat_secs = heartbeat_secs
        self.on_early_error = on_early_error
        self.headers: dict[str, str] = dict(headers or {})
        self.started = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        lock = anyio.Lock()
        last_write = anyio.current_time()
        ended = False

        async def start() -> None:
            headers = [(b"content-type", self.media_type.encode())]
            headers += [(b"cache-control", b"no-cache"), (b"x-accel-buffering", b"no")]
            headers += [(k.lower().encode(), v.encode()) for k, v in self.headers.items()]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            self.started = True

        async def emit(chunk: bytes, *, last: bool = False) -> None:
            nonlocal last_write, ended
            async with lock:
                if ended:
                    return
                if not self.started:
                    await start()
                    if self.opening is not None:
                        chunk = self.opening() + chunk
                ended = last
                await send({"type": "http.response.body", "body": chunk, "more_body": not last})
                last_write = anyio.current_time()

        async def beat() -> None:
            assert self.heartbeat_secs and self.heartbeat is not None
            while True:
                await anyio.sleep(
                    max(0.05, last_write + self.heartbeat_secs - anyio.current_time())
                )
                # Only once the answer has started (headers must wait for the producer),
                # unless the stream has an opening to start it with.
                ready = self.started or self.opening is not None
                if ready and anyio.current_time() - last_write >= self.heartbeat_secs:
                    await emit(self.heartbeat)

        early: BaseException | None = None
        async with anyio.create_task_group() as tg:

            async def produce() -> None:
                nonlocal early
                try:
                    await self.producer(emit, self)
                except Exception as exc:  # rendered below as a normal error response
                    if self.started or self.on_early_error is None:
                        raise
                    early = exc
                tg.cancel_scope.cancel()

            async def listen() -> None:
                await _wait_for_disconnect(receive)
                tg.cancel_scope.cancel()

            tg.start_soon(produce)
            tg.start_soon(listen)
            if self.heartbeat is not None and self.heartbeat_secs:
                tg.start_soon(beat)

        if early is not None and self.on_early_error is not None:
            response = self.on_early_error(early)
            await response(scope, receive, send)
            return
        if not self.started:
            await emit(b"")
        if ended:
            return
        try:
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except OSError:
            pass  # the client is gone
