"""The client-tools bridge as an MCP server, driven by the official MCP client over
streamable HTTP: exactly the run's tools, a call held until the client's result, and a path
that stops working with its run."""

from __future__ import annotations

import socket

import anyio
import anyio.lowlevel
import httpx
import pytest
from mcp import Client

from clinvk.adapters.mcp_bridge import LoopbackToolBridge
from clinvk.domain.tools import ClientTool, ToolOutcome

pytestmark = pytest.mark.anyio

WEATHER = ClientTool(name="get_weather", description="The weather of a city",
                     parameters={"type": "object", "properties": {"city": {"type": "string"}},
                                 "required": ["city"]})
TIME = ClientTool(name="get_time", parameters={"type": "object"})


@pytest.fixture
async def bridge():
    bridge = LoopbackToolBridge(heartbeat_secs=0.05)
    yield bridge
    await bridge.close()


async def test_it_lists_exactly_the_runs_tools_as_read_only(bridge):
    """tools/list: the run's tools with their descriptions and schemas, marked read-only
    (so claude may call several at once); another run's tools are not there."""
    channel = await bridge.open([WEATHER, TIME])
    await bridge.open([ClientTool(name="other_runs_tool")])
    async with Client(channel.url) as client:
        tools = (await client.list_tools()).tools
    assert [(t.name, t.description, t.input_schema) for t in tools] == [
        ("get_weather", WEATHER.description, WEATHER.parameters),
        ("get_time", "", TIME.parameters)]
    assert all(t.annotations is not None and t.annotations.read_only_hint for t in tools)


async def test_a_call_waits_for_the_clients_result(bridge):
    """tools/call comes out of the channel as a ToolCall and returns only when the result
    is answered (through heartbeats), with the result's text and error flag."""
    channel = await bridge.open([WEATHER])
    results = []
    async with Client(channel.url) as client, anyio.create_task_group() as tg:

        async def call() -> None:
            results.append(await client.call_tool("get_weather", {"city": "Oslo"}))

        tg.start_soon(call)
        made = await channel.next_call()
        assert (made.name, made.arguments) == ("get_weather", {"city": "Oslo"})
        # Lets heartbeats go by on the waiting call; nothing here depends on how many.
        await anyio.sleep(0.2)
        assert results == []  # no result before the answer, whatever the timing
        assert channel.answer(ToolOutcome(call_id=made.id, output="snow", is_error=True))
    [result] = results
    assert result.is_error and result.content[0].text == "snow"


async def test_a_closed_channel_fails_its_call_and_its_path_is_gone(bridge):
    """Closing the channel (the run ended) fails a waiting call; its path is then a 404,
    and with no run left the listener stops."""
    channel = await bridge.open([WEATHER])
    keep = await bridge.open([TIME])
    results = []
    async with Client(channel.url) as client, anyio.create_task_group() as tg:

        async def call() -> None:
            results.append(await client.call_tool("get_weather", {"city": "Rome"}))

        tg.start_soon(call)
        await channel.next_call()
        channel.close()
    assert results[0].is_error
    async with httpx.AsyncClient() as http:
        r = await http.post(channel.url, json={"jsonrpc": "2.0", "id": 1, "method": "ping"})
        assert r.status_code == 404
        wrong = await http.post(keep.url + "x", json={"jsonrpc": "2.0", "id": 1,
                                                      "method": "ping"})
        assert wrong.status_code == 404
    keep.close()
    assert bridge.open_channels() == 0
    with pytest.raises(httpx.ConnectError):
        async with httpx.AsyncClient() as http:
            await http.post(keep.url, json={})


async def test_its_connections_have_nagle_off(bridge):
    """The bridge's accepted connections have TCP_NODELAY, so an answer's body is not held
    back until the CLI acknowledges its headers (a delayed ACK costs 40 ms)."""
    channel = await bridge.open([WEATHER])
    async with httpx.AsyncClient() as http:
        r = await http.post(channel.url, json={"jsonrpc": "2.0", "id": 1, "method": "ping"})
        assert r.status_code == 200
        server = bridge._server  # the listener's live connections: no public view of them
        assert server is not None and server.server_state.connections
        for connection in server.server_state.connections:
            sock = connection.transport.get_extra_info("socket")
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    channel.close()


SSE = {"accept": "application/json, text/event-stream"}
CALL = {"jsonrpc": "2.0", "id": 7, "method": "tools/call",
        "params": {"name": "get_weather", "arguments": {"city": "Oslo"}}}


async def test_a_long_wait_gets_heartbeats_before_its_result(bridge):
    """A call not answered within a heartbeat interval gets its SSE headers and `: ping`
    comments (so no idle timeout of the CLI's HTTP client ends it), then the result."""
    channel = await bridge.open([WEATHER])
    async with httpx.AsyncClient() as http, http.stream("POST", channel.url, json=CALL,
                                                       headers=SSE) as r:
        # The headers come with the first heartbeat: the call is waiting by then.
        assert r.headers["content-type"] == "text/event-stream"
        made = await channel.next_call()
        assert channel.answer(ToolOutcome(call_id=made.id, output="rain"))
        body = b"".join([chunk async for chunk in r.aiter_bytes()])
    assert body.startswith(b": ping\n\n")
    assert body.endswith(b"\n\n") and b'"text":"rain"' in body.split(b"event: message\n")[1]


@pytest.mark.parametrize("heartbeat_secs", [3600, 0])
async def test_a_quick_answer_comes_without_heartbeats(heartbeat_secs):
    """A call answered before its first heartbeat gets the SSE headers and the result
    together, with no heartbeat (and no task of its own) spent on it; 0 turns heartbeats
    off."""
    bridge = LoopbackToolBridge(heartbeat_secs=heartbeat_secs)
    channel = await bridge.open([WEATHER])
    bodies = []
    try:
        async with httpx.AsyncClient() as http, anyio.create_task_group() as tg:

            async def call() -> None:
                r = await http.post(channel.url, json=CALL, headers=SSE)
                bodies.append((r.headers["content-type"], r.content))

            tg.start_soon(call)
            made = await channel.next_call()
            for _ in range(20):  # let the waiting call run: a heartbeat due now would go out
                await anyio.lowlevel.checkpoint()
            assert channel.answer(ToolOutcome(call_id=made.id, output="sun"))
    finally:
        await bridge.close()
    [(kind, body)] = bodies
    assert kind == "text/event-stream"
    assert body.startswith(b"event: message\ndata: ") and b'"text":"sun"' in body
