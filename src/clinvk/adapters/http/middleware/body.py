"""Read the request body before the app runs: refuse it past `max_request_body_bytes`
(413) or when it does not arrive within `read_timeout_secs` (408).

The limit is enforced on the bytes that actually arrive, not on Content-Length alone, so
a missing or lying Content-Length and chunked uploads are all caught; a declared length
over the limit is refused before a byte is read. Every handler reads the whole body
anyway, so reading it here first costs nothing and gives one place, outside every
dialect's exception handlers, where both errors get the path's dialect envelope. The app
then reads the buffered body as usual, and later `receive()` calls (disconnect
listeners) go to the server.
"""

from __future__ import annotations

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from clinvk.adapters.http.middleware.envelope import error_response


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


class _TooLarge(Exception):
    pass


class RequestBodyMiddleware:
    """Buffer each HTTP request body, bounded in size and in time."""

    def __init__(self, app: ASGIApp, *, max_bytes: int, read_timeout: float) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.read_timeout = read_timeout

    async def _read(self, receive: Receive) -> tuple[list[bytes], Message | None]:
        """The body's chunks, and the disconnect message if the client left mid-body."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return chunks, message
            chunk = message.get("body", b"")
            size += len(chunk)
            if self.max_bytes and size > self.max_bytes:
                raise _TooLarge
            if chunk:
                chunks.append(chunk)
            if not message.get("more_body", False):
                return chunks, None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit_text = f"request body is larger than {self.max_bytes} bytes"
        declared = _declared_length(scope)
        if self.max_bytes and declared is not None and declared > self.max_bytes:
            await self._refuse(scope, receive, send, 413, limit_text, "request_too_large")
            return
        try:
            with anyio.fail_after(self.read_timeout or None):
                chunks, ended = await self._read(receive)
        except _TooLarge:
            await self._refuse(scope, receive, send, 413, limit_text, "request_too_large")
            return
        except TimeoutError:
            message = f"request body not received within {self.read_timeout:g} s"
            await self._refuse(scope, receive, send, 408, message, "request_timeout")
            return
        if ended is not None:
            return  # the client left before sending its whole request: nobody to answer
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    @staticmethod
    async def _refuse(
        scope: Scope, receive: Receive, send: Send, status: int, message: str, code: str
    ) -> None:
        # The unread rest of the body makes the connection unusable for another request.
        response = error_response(
            scope["path"], status, message, code=code, headers={"Connection": "close"}
        )
        await response(scope, receive, send)
