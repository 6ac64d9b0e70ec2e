"""Helpers for the MCP contract tests: the official SDK client over both transports."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from mcp.shared.message import SessionMessage
from mcp_types import jsonrpc_message_adapter

from clinvk.adapters.mcp.server import McpServer
from clinvk.adapters.mcp.stdio import serve_stdio

TOOL_NAMES = [
    "clinvk_prompt",
    "clinvk_parallel",
    "clinvk_chain",
    "clinvk_compare",
    "clinvk_backends",
    "clinvk_sessions",
    "clinvk_session_get",
    "clinvk_session_delete",
    "clinvk_health",
]


@asynccontextmanager
async def stdio_pipe(server: McpServer, wire: list[bytes] | None = None
                     ) -> AsyncIterator[tuple]:
    """An SDK transport to `serve_stdio` through in-memory byte lines, framed exactly as
    the SDK's stdio client frames them (one JSON message per line); every line written
    by the server is appended to `wire`."""
    to_client, client_reads = anyio.create_memory_object_stream[SessionMessage | Exception](16)
    client_writes, from_client = anyio.create_memory_object_stream[SessionMessage](16)
    lines_in, lines_out = anyio.create_memory_object_stream[bytes](16)

    async def client_lines() -> AsyncIterator[bytes]:
        async for line in lines_out:
            yield line

    async def write(data: bytes) -> None:
        if wire is not None:
            wire.append(data)
        for line in data.splitlines():
            await to_client.send(SessionMessage(jsonrpc_message_adapter.validate_json(
                line, by_name=False)))

    async def pump() -> None:
        async with lines_in:
            async for message in from_client:
                json = message.message.model_dump_json(by_alias=True, exclude_unset=True)
                await lines_in.send(json.encode() + b"\n")

    streams = (to_client, client_reads, client_writes, from_client, lines_in, lines_out)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(pump)
            tg.start_soon(serve_stdio, server, client_lines(), write)
            try:
                yield client_reads, client_writes
            finally:
                tg.cancel_scope.cancel()
    finally:
        for stream in streams:
            await stream.aclose()
