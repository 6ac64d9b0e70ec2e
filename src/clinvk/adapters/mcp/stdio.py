"""MCP over stdio: one JSON-RPC message per line on stdin, answers and notifications one per
line on stdout (logs go to stderr).

Requests run concurrently, so a `notifications/cancelled` read while a tool runs stops it
(and the CLI's process group with it). At end of input the requests still running are
finished and answered before the server exits (`printf ... | clinvk mcp` works); a signal
cancels them instead.
"""

from __future__ import annotations

import os
import stat
from collections.abc import AsyncIterator, Awaitable, Callable

import anyio
import anyio.lowlevel
import msgspec

from clinvk.adapters.mcp import protocol as p
from clinvk.adapters.mcp.server import McpServer, McpSession

#: Longest line read from stdin; clinvoker allows 10 MB per message too.
MAX_LINE_BYTES = 10 * 1024 * 1024


async def serve_stdio(
    server: McpServer,
    lines: AsyncIterator[bytes],
    write: Callable[[bytes], Awaitable[None]],
) -> None:
    """Serve one client: read `lines` until they end, answer through `write`."""
    session = McpSession()
    lock = anyio.Lock()

    async def send(message: msgspec.Struct) -> None:
        async with lock:
            await write(p.encode(message) + b"\n")

    async def answer(message: p.Message) -> None:
        response = await server.handle(message, session, send)
        if response is not None:
            await send(response)

    async with anyio.create_task_group() as tg:
        async for line in lines:
            if not line.strip():
                continue
            try:
                message = p.message_decoder.decode(line)
            except msgspec.DecodeError:
                await send(p.error_response(None, p.PARSE_ERROR, "parse error"))
                continue
            except msgspec.ValidationError:
                await send(p.error_response(None, p.INVALID_REQUEST,
                                            "expected one JSON-RPC message object"))
                continue
            if message.jsonrpc != p.JSONRPC:
                request_id = None if message.is_notification else message.id
                await send(p.error_response(request_id, p.INVALID_REQUEST,  # type: ignore[arg-type]
                                            "invalid JSON-RPC version"))
                continue
            if message.is_notification or message.method is None:
                # Handled in order (a cancel must not overtake what it cancels).
                await server.handle(message, session, send)
                continue
            tg.start_soon(answer, message)


async def stdin_lines() -> AsyncIterator[bytes]:
    """The process's stdin, line by line, without a thread that could outlive a signal."""
    fd = 0
    buffer = b""
    if stat.S_ISREG(os.fstat(fd).st_mode):
        # A regular file never blocks (and cannot be polled): read it as it is.
        while chunk := os.read(fd, 65536):
            buffer += chunk
            *complete, buffer = buffer.split(b"\n")
            for line in complete:
                yield line
            await anyio.lowlevel.checkpoint()
        if buffer.strip():
            yield buffer
        return
    was_blocking = os.get_blocking(fd)
    os.set_blocking(fd, False)
    try:
        while True:
            await anyio.wait_readable(fd)
            try:
                chunk = os.read(fd, 65536)
            except BlockingIOError:
                continue
            if not chunk:
                break
            buffer += chunk
            *complete, buffer = buffer.split(b"\n")
            for line in complete:
                yield line
            if len(buffer) > MAX_LINE_BYTES:
                raise ValueError(f"a stdin message is longer than {MAX_LINE_BYTES} bytes")
        if buffer.strip():
            yield buffer
    finally:
        os.set_blocking(fd, was_blocking)


async def write_stdout(data: bytes) -> None:
    """Write to stdout (fd 1) completely, in a worker thread (a pipe may be full)."""

    def write_all() -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(1, view):]

    await anyio.to_thread.run_sync(write_all)
