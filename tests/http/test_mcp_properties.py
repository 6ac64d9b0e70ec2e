"""Property tests of the MCP dispatcher: whatever a client sends, the answer is a JSON-RPC
message (or nothing, for a notification), never an internal error or a crash."""

from __future__ import annotations

import anyio
import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clinvk.adapters.mcp import protocol as p
from clinvk.adapters.mcp.server import McpSession
from clinvk.entrypoints.mcp import mcp_server
from tests.strategies import json_values
from tests.support.mcp import TOOL_NAMES

_settings = settings(max_examples=60, deadline=None,
                     suppress_health_check=[HealthCheck.function_scoped_fixture])

methods = st.sampled_from(["initialize", "ping", "tools/list", "tools/call", "logging/setLevel",
                           "notifications/cancelled", "resources/list"]) | st.text(max_size=12)
ids = st.none() | st.integers() | st.text(max_size=8)


def _handle(services, message: p.Message):
    server = mcp_server(services)

    async def main():
        sent: list[p.Notification] = []

        async def notify(n: p.Notification) -> None:
            sent.append(n)

        return await server.handle(message, McpSession(), notify), sent

    return anyio.run(main)


@_settings
@given(method=methods, request_id=ids, params=json_values)
def test_any_message_gets_a_json_rpc_answer(services, method, request_id, params):
    """Any method with any params: a result or a JSON-RPC error other than internal error;
    notifications (no id) get nothing."""
    message = p.Message(jsonrpc="2.0", id=request_id, method=method, params=params)
    response, _ = _handle(services, message)
    if request_id is None:
        assert response is None
        return
    assert response is not None
    assert (response.result is None) != (response.error is None)
    if response.error is not None:
        assert response.error.code != p.INTERNAL_ERROR
    msgspec.json.encode(response)  # always serialisable


@_settings
@given(name=st.sampled_from(TOOL_NAMES), arguments=json_values)
def test_any_arguments_give_a_result_or_an_error_result(services, name, arguments):
    """Any arguments to any tool: a tool result (maybe isError), never a protocol error
    other than invalid params for arguments that are not an object."""
    message = p.Message(jsonrpc="2.0", id=1, method="tools/call",
                        params={"name": name, "arguments": arguments})
    response, _ = _handle(services, message)
    assert response is not None
    if response.error is not None:
        assert response.error.code == p.INVALID_PARAMS and not isinstance(arguments, dict)
    else:
        assert isinstance(response.result["isError"], bool)
