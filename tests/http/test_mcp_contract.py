"""The MCP server against the official MCP client (`mcp` SDK), over both transports:
streamable HTTP on a real uvicorn server (`/mcp` on the whole app, behind its middleware)
and stdio (the SDK's line framing into `serve_stdio`), with the domain on fakes."""

from __future__ import annotations

import json

import anyio
import jsonschema
import msgspec
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError

from clinvk.adapters.http.app import create_app
from clinvk.adapters.http.openapi import DIALECTS, build_openapi
from clinvk.entrypoints.mcp import mcp_routes, mcp_server
from tests.fakes import ScriptedRunner
from tests.support.live import LiveServer
from tests.support.mcp import TOOL_NAMES, stdio_pipe

pytestmark = pytest.mark.anyio

TRANSPORTS = ["http", "stdio"]

#: Each tool's input and output as the REST API's OpenAPI document names them.
REST_TYPES = {
    "clinvk_prompt": ("PromptRequest", "PromptResponse"),
    "clinvk_parallel": ("ParallelBody", "ParallelResponse"),
    "clinvk_chain": ("ChainBody", "ChainResponse"),
    "clinvk_compare": ("CompareBody", "CompareResponse"),
    "clinvk_backends": (None, "BackendsResponse"),
    "clinvk_sessions": ("SessionQuery", "SessionsResponse"),
    "clinvk_session_get": (None, "Session"),
    "clinvk_session_delete": (None, "DeletedResponse"),
}


@pytest.fixture
def runner() -> ScriptedRunner:
    return ScriptedRunner()


@pytest.fixture
def http_url(services):
    with LiveServer(create_app(services, mounts=mcp_routes(services))) as server:
        yield server.url


@pytest.fixture(params=TRANSPORTS)
def connect(request, services):
    """Make an SDK client over the parametrized transport (`mcp.Client` arguments pass on)."""
    if request.param == "http":
        url = request.getfixturevalue("http_url") + "/mcp"
        return lambda **kw: Client(url, **kw)
    return lambda **kw: Client(stdio_pipe(mcp_server(services)), **kw)


def _structured(result) -> dict:
    assert not result.is_error, result.content
    assert result.structured_content is not None
    # The text rendering says the same as the structured content.
    assert json.loads(result.content[0].text) == result.structured_content
    return result.structured_content


async def test_tools_have_the_original_names_and_valid_schemas(connect):
    """tools/list names clinvoker's nine tools, each with valid JSON Schemas for its input
    (an object) and its output, and a description written for a model."""
    async with connect() as client:
        tools = (await client.list_tools()).tools
    assert [t.name for t in tools] == TOOL_NAMES
    for tool in tools:
        jsonschema.Draft202012Validator.check_schema(tool.input_schema)
        jsonschema.Draft202012Validator.check_schema(tool.output_schema)
        assert tool.input_schema["type"] == "object"
        assert len(tool.description) > 80


async def test_schemas_are_the_rest_apis_own(connect):
    """Each tool's input and output schema has exactly the fields of the REST API's
    request and response types (the OpenAPI document is generated from the same types)."""
    rest = build_openapi(DIALECTS, version="x", auth_required=False)["components"]["schemas"]
    async with connect() as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
    for name, (given, answer) in REST_TYPES.items():
        pairs = [(tools[name].output_schema, rest[answer])]
        if given:
            pairs.append((tools[name].input_schema, rest[given]))
        for mcp_schema, rest_schema in pairs:
            assert mcp_schema["properties"].keys() == rest_schema["properties"].keys()
            assert set(mcp_schema.get("required", [])) == set(rest_schema.get("required", []))


async def test_every_tool_answers_with_structured_content(connect, runner, store):
    """Each of the nine tools runs through the domain and answers structured content that
    the client validated against the tool's output schema, plus the same as text."""
    async with connect() as client:
        await client.list_tools()  # the client validates results against these schemas
        prompt = _structured(await client.call_tool(
            "clinvk_prompt", {"backend": "claude", "prompt": "hi there"}))
        assert prompt["output"] == "claude: hi there"
        assert prompt["exit_code"] == 0
        session_id = prompt["session_id"]

        parallel = _structured(await client.call_tool("clinvk_parallel", {"tasks": [
            {"backend": "claude", "prompt": "a"}, {"backend": "codex", "prompt": "b"}]}))
        assert [r["output"] for r in parallel["results"]] == ["claude: a", "codex: b"]

        chain = _structured(await client.call_tool("clinvk_chain", {"steps": [
            {"backend": "codex", "prompt": "draft"},
            {"backend": "gemini", "prompt": "review {{previous}}"}]}))
        assert chain["results"][1]["output"] == "gemini: review codex: draft"

        compare = _structured(await client.call_tool(
            "clinvk_compare", {"prompt": "q", "backends": ["claude", "gemini"]}))
        assert {r["backend"]: r["output"] for r in compare["results"]} == {
            "claude": "claude: q", "gemini": "gemini: q"}

        backends = _structured(await client.call_tool("clinvk_backends", {}))
        assert [b["name"] for b in backends["backends"]] == ["claude", "codex", "gemini"]

        sessions = _structured(await client.call_tool("clinvk_sessions", {"backend": "claude"}))
        assert [s["id"] for s in sessions["sessions"]] == [session_id]

        got = _structured(await client.call_tool("clinvk_session_get", {"id": session_id}))
        assert got["initial_prompt"] == "hi there"

        deleted = _structured(await client.call_tool("clinvk_session_delete",
                                                     {"id": session_id}))
        assert deleted == {"deleted": True, "id": session_id}
        assert session_id not in store.sessions

        health = _structured(await client.call_tool("clinvk_health", {}))
        assert health["status"] == "ok"


async def test_unknown_tool_is_invalid_params(connect):
    """Calling a tool that does not exist is JSON-RPC error -32602, as in clinvoker."""
    async with connect() as client:
        with pytest.raises(MCPError) as caught:
            await client.call_tool("clinvk_nope", {})
    assert caught.value.code == -32602
    assert "clinvk_nope" in caught.value.error.message


async def test_a_failing_run_and_bad_arguments_are_error_results(connect):
    """A run the domain refuses and arguments that do not decode are tool results with
    isError (the model reads why), naming the error code and the field."""
    async with connect() as client:
        unknown = await client.call_tool("clinvk_prompt", {"backend": "nope", "prompt": "x"})
        bad = await client.call_tool("clinvk_prompt", {"backend": "claude", "max_turns": "x",
                                                      "prompt": "y"})
        failed = await client.call_tool("clinvk_prompt", {"backend": "claude",
                                                         "prompt": "[fail] now"})
    assert unknown.is_error and unknown.content[0].text.startswith("unknown_backend:")
    assert bad.is_error and "max_turns" in bad.content[0].text
    assert failed.is_error and "backend_failed: API Error: injected" in failed.content[0].text


async def test_ping_answers_empty(connect):
    """ping gets an empty result (a handshake-era method: the SDK sends it in legacy mode)."""
    async with connect(mode="legacy") as client:
        assert (await client.session.send_ping()).model_dump(exclude_none=True) == {}


async def test_progress_notifications_stream_the_answer(connect, runner):
    """With a progressToken, the run's events arrive as progress notifications while it
    runs, increasing, their text pieces making up the answer."""
    seen: list[tuple[float, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, message))

    async with connect() as client:
        result = await client.call_tool("clinvk_prompt",
                                        {"backend": "codex", "prompt": "one two three"},
                                        progress_callback=on_progress)
    assert _structured(result)["output"] == "codex: one two three"
    progress = [p for p, _ in seen]
    assert progress == sorted(set(progress)) and len(progress) >= 5
    assert "".join(m for _, m in seen[1:] if m) == "codex: one two three"


async def test_stream_json_sends_the_native_stream_lines_as_log_messages(connect):
    """`output_format: stream-json` sends each CLI event as a log notification holding the
    native NDJSON line (init, deltas; completion is the result), as clinvoker does."""
    lines: list[dict] = []

    async def on_log(params) -> None:
        lines.append(params.data)

    async with connect(logging_callback=on_log) as client:
        result = await client.call_tool("clinvk_prompt", {
            "backend": "gemini", "prompt": "x y", "output_format": "stream-json",
            "ephemeral": True})
    assert _structured(result)["output"] == "gemini: x y"
    assert lines[0]["type"] == "init" and lines[0]["backend"] == "gemini"
    assert "".join(line["content"]["text"] for line in lines if line["type"] == "delta") \
        == "gemini: x y"
    assert not {"done", "usage"} & {line["type"] for line in lines}


async def test_orchestration_progress(connect):
    """A parallel call with a progressToken reports each task starting and finishing."""
    messages: list[str] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        messages.append(message or "")

    async with connect() as client:
        await client.call_tool("clinvk_parallel", {"tasks": [
            {"backend": "claude", "prompt": "a"}, {"backend": "codex", "prompt": "b"}]},
            progress_callback=on_progress)
    assert "run 0 (claude) started" in messages
    assert "run 1 (codex) completed" in messages


async def test_cancelling_a_call_cancels_the_run(connect, runner):
    """A call the client cancels (notifications/cancelled) stops the domain's run — the
    real runner's cleanup then ends the CLI's process group — and the server goes on."""
    async with connect() as client:
        async with anyio.create_task_group() as tg:

            async def call() -> None:
                await client.call_tool("clinvk_prompt",
                                       {"backend": "claude", "prompt": "[hang] forever"})

            tg.start_soon(call)
            with anyio.fail_after(30):  # a hang guard only
                while runner.live == 0:
                    await anyio.sleep(0.01)
            tg.cancel_scope.cancel()
        with anyio.fail_after(30):
            while "[hang] forever" not in runner.cancelled:
                await anyio.sleep(0.01)
        assert runner.live == 0
        assert (await client.call_tool("clinvk_backends", {})).is_error is False


# -- HTTP specifics -----------------------------------------------------------------------


def _post(client, body, **headers):
    return client.post("/mcp", content=json.dumps(body), headers={
        "content-type": "application/json", **headers})


INIT = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                   "clientInfo": {"name": "t", "version": "1"}}}


@pytest.fixture
def http(http_url):
    import httpx

    with httpx.Client(base_url=http_url) as c:
        yield c


@pytest.mark.parametrize(("asked", "answered"), [
    ("2024-11-05", "2024-11-05"), ("2025-11-25", "2025-11-25"), ("1999-01-01", "2025-11-25"),
    (None, "2024-11-05")])
async def test_protocol_version_negotiation(http, asked, answered):
    """initialize answers the client's version when known, the newest otherwise, and
    clinvoker's 2024-11-05 to a client that names none; it starts a session."""
    body = {**INIT, "params": {**INIT["params"], "protocolVersion": asked}}
    r = _post(http, body)
    assert r.status_code == 200
    assert r.json()["result"]["protocolVersion"] == answered
    assert r.headers["mcp-session-id"]


async def test_notifications_get_204_without_a_body(http):
    """A notification (and a client's response) is answered 204 with no body, as clinvoker."""
    r = _post(http, {"jsonrpc": "2.0", "method": "notifications/initialized"})
    assert (r.status_code, r.content) == (204, b"")
    r = _post(http, {"jsonrpc": "2.0", "id": 9, "result": {}})
    assert (r.status_code, r.content) == (204, b"")


async def test_clients_that_never_initialize_are_served(http):
    """Like clinvoker, a plain JSON-RPC POST without a session works (tools/list by curl)."""
    r = _post(http, {"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
    assert r.status_code == 200
    assert [t["name"] for t in r.json()["result"]["tools"]] == TOOL_NAMES


async def test_sessions_end_with_delete_and_unknown_ones_are_404(http):
    """DELETE ends a session; a request naming an unknown session is 404 (the client must
    initialize again); GET is 405 (nothing is sent unasked)."""
    sid = _post(http, INIT).headers["mcp-session-id"]
    ping = {"jsonrpc": "2.0", "id": 2, "method": "ping"}
    assert _post(http, ping, **{"mcp-session-id": sid}).json()["result"] == {}
    assert http.delete("/mcp", headers={"mcp-session-id": sid}).status_code == 204
    gone = _post(http, ping, **{"mcp-session-id": sid})
    assert gone.status_code == 404 and gone.json()["error"]["code"] == -32600
    assert http.get("/mcp").status_code == 405


async def test_malformed_messages(http):
    """Not JSON: 400 with -32700; wrong jsonrpc version: 400 with -32600; an unknown
    method: -32601; an unsupported MCP-Protocol-Version header: 400."""
    r = http.post("/mcp", content=b"{nope", headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["code"] == -32700
    r = _post(http, {"jsonrpc": "1.0", "id": 1, "method": "ping"})
    assert r.status_code == 400 and r.json()["error"]["code"] == -32600
    r = _post(http, {"jsonrpc": "2.0", "id": 1, "method": "resources/list"})
    assert r.json()["error"]["code"] == -32601
    r = _post(http, {"jsonrpc": "2.0", "id": 1, "method": "ping"},
              **{"mcp-protocol-version": "1999-01-01"})
    assert r.status_code == 400


async def test_streaming_needs_an_event_stream_accept(http, runner):
    """`output_format: stream-json` without `Accept: text/event-stream` is clinvoker's
    JSON-RPC error and runs nothing; with it, the answer is an SSE stream of log
    notifications ending with the response."""
    call = {"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {
        "name": "clinvk_prompt",
        "arguments": {"backend": "claude", "prompt": "p q", "output_format": "stream-json"}}}
    r = _post(http, call, accept="application/json")
    assert r.json()["error"] == {"code": -32602,
                                 "message": "streaming requires Accept: text/event-stream"}
    assert runner.runs == []
    r = _post(http, call, accept="application/json, text/event-stream")
    assert r.headers["content-type"].startswith("text/event-stream")
    events = [json.loads(chunk.split("data: ", 1)[1])
              for chunk in r.text.split("\n\n") if "data: " in chunk]
    assert all(e["method"] == "notifications/message" for e in events[:-1])
    assert events[-1]["id"] == 5
    assert events[-1]["result"]["structuredContent"]["output"] == "claude: p q"


async def test_mcp_sits_behind_the_api_key_middleware(services):
    """With API keys configured, /mcp needs one like every API route; the refusal is a
    JSON-RPC error, which the SDK client reports with the middleware's message."""
    import httpx

    app = create_app(services, api_keys=["sekret"], mounts=mcp_routes(services))
    with LiveServer(app) as server, httpx.Client(base_url=server.url) as c:
        refused = _post(c, INIT)
        assert refused.status_code == 401
        assert refused.json()["error"]["code"] == -32600
        assert refused.json()["error"]["data"]["status"] == 401
        assert _post(c, INIT, authorization="Bearer sekret").status_code == 200
        with pytest.raises(BaseExceptionGroup) as caught:
            async with Client(server.url + "/mcp", mode="legacy"):
                pass
        assert caught.group_contains(MCPError, match="missing API key")


async def test_a_page_from_another_origin_is_refused(http):
    """A browser page from a non-local origin cannot drive the CLIs (DNS rebinding)."""
    assert _post(http, INIT, origin="http://evil.example").status_code == 403
    assert _post(http, INIT, origin="http://localhost:3000").status_code == 200


async def test_a_client_that_disconnects_cancels_its_run(http_url, runner):
    """Closing the connection of a running call cancels the run."""
    import httpx

    call = {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {
        "name": "clinvk_prompt", "arguments": {"backend": "codex", "prompt": "[hang] x"}}}
    async with httpx.AsyncClient(base_url=http_url) as c, anyio.create_task_group() as tg:
        tg.start_soon(lambda: c.post("/mcp", content=msgspec.json.encode(call),
                                     headers={"content-type": "application/json"}))
        with anyio.fail_after(30):
            while runner.live == 0:
                await anyio.sleep(0.01)
        tg.cancel_scope.cancel()
    with anyio.fail_after(30):
        while "[hang] x" not in runner.cancelled:
            await anyio.sleep(0.01)


async def test_stdio_answers_garbage_with_parse_errors(services):
    """On stdio, a line that is not JSON gets -32700 and the server reads on."""
    from clinvk.adapters.mcp.stdio import serve_stdio

    lines = [b"garbage\n", b'{"jsonrpc":"2.0","id":1,"method":"ping"}\n',
             b'{"jsonrpc":"2.0","method":"notifications/initialized"}\n']
    out: list[bytes] = []

    async def source():
        for line in lines:
            yield line

    async def write(data: bytes) -> None:
        out.append(data)

    await serve_stdio(mcp_server(services), source(), write)
    answers = [json.loads(o) for o in out]
    assert answers == [{"jsonrpc": "2.0", "id": None,
                        "error": {"code": -32700, "message": "parse error"}},
                       {"jsonrpc": "2.0", "id": 1, "result": {}}]



async def test_a_browser_client_can_read_its_session_id(http):
    """CORS exposes Mcp-Session-Id, so an MCP client in a local page can keep its session."""
    r = _post(http, INIT, origin="http://localhost:6274")
    assert "mcp-session-id" in r.headers["access-control-expose-headers"].lower()
