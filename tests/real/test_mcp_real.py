"""The MCP tools driving the real CLIs against the model double, with the official MCP
client: `clinvk mcp` (stdio, a subprocess spawned by the SDK) and `/mcp` on a real
`clinvk serve`. A cancelled call ends the CLI's whole process group."""

from __future__ import annotations

import os
import sys

import anyio
import pytest
from mcp import Client, StdioServerParameters

from tests.support.clis import missing_clis
from tests.support.server import ClinvkServer

pytestmark = [pytest.mark.real, pytest.mark.anyio]


@pytest.fixture
def configured(model_double, tmp_path) -> ClinvkServer:
    """A clinvk config running the real CLIs against the double (its server not started)."""
    assert not missing_clis(), f"backend CLIs not installed: {missing_clis()}"
    return ClinvkServer(model_double.url, tmp_path)


@pytest.fixture
def stdio_client(configured):
    """`clinvk mcp` over stdio with that config, as an MCP client would start it."""
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "clinvk.entrypoints.cli", "mcp", "--config", str(configured.config_path)],
        env={"CLINVK_HOME": str(configured.home), "PATH": os.environ["PATH"]},
        cwd=str(configured.workdir),
    )
    return lambda: Client(params)


@pytest.fixture
def http_client(configured):
    """`/mcp` on a real `clinvk serve` with that config."""
    server = configured.start()
    try:
        yield lambda: Client(server.url + "/mcp")
    finally:
        server.stop()


async def test_clinvk_prompt_on_stdio_answers_with_the_cli_s_reply(stdio_client,
                                                                    model_double):
    """clinvk_prompt over stdio runs the real codex, whose model (the double) answers; the
    tool's structured result carries that answer and the session to continue."""
    model_double.set(reply="second opinion: looks fine")
    async with stdio_client() as client:
        await client.list_tools()
        result = await client.call_tool("clinvk_prompt",
                                        {"backend": "codex", "prompt": "review this"})
    assert not result.is_error, result.content
    assert result.structured_content["output"] == "second opinion: looks fine"
    assert result.structured_content["backend"] == "codex"
    assert result.structured_content["session_id"]


async def test_clinvk_compare_over_http_runs_all_three_clis(http_client, model_double):
    """clinvk_compare on /mcp of `clinvk serve` asks claude, codex and gemini; each answer
    is the double's reply as that CLI printed it."""
    model_double.set(reply="same answer")
    async with http_client() as client:
        await client.list_tools()
        result = await client.call_tool("clinvk_compare", {
            "prompt": "which is better?", "backends": ["claude", "codex", "gemini"]})
    assert not result.is_error, result.content
    outputs = {r["backend"]: r["output"] for r in result.structured_content["results"]}
    assert outputs == {"claude": "same answer", "codex": "same answer",
                       "gemini": "same answer"}


async def test_progress_streams_the_real_cli_s_answer(stdio_client, model_double):
    """With a progressToken, the pieces claude prints reach the client as progress
    notifications, and together they are the answer."""
    model_double.set(reply="alpha beta gamma delta")
    messages: list[str] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        messages.append(message or "")

    async with stdio_client() as client:
        result = await client.call_tool("clinvk_prompt",
                                        {"backend": "claude", "prompt": "go"},
                                        progress_callback=on_progress)
    assert result.structured_content["output"] == "alpha beta gamma delta"
    assert messages[0].startswith("started")
    assert "".join(messages[1:]) == "alpha beta gamma delta"


@pytest.mark.parametrize("transport", ["stdio", "http"])
async def test_a_cancelled_call_ends_the_cli_process_group(request, configured, model_double,
                                                           transport):
    """The client cancels a call while the CLI is mid-answer (notifications/cancelled): the
    CLI's process group is ended and the server answers the next call."""
    connect = request.getfixturevalue(f"{transport}_client")
    model_double.hold_after(1)  # the answer never ends by itself
    streaming = anyio.Event()

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        if progress >= 2:  # init, then a piece of text: the CLI is answering
            streaming.set()

    async with connect() as client:
        async with anyio.create_task_group() as tg:

            async def call() -> None:
                await client.call_tool("clinvk_prompt", {"backend": "gemini", "prompt": "long"},
                                       progress_callback=on_progress)

            tg.start_soon(call)
            with anyio.fail_after(120):  # a hang guard only
                await streaming.wait()
            assert configured.cli_pids()
            tg.cancel_scope.cancel()
        left = await anyio.to_thread.run_sync(configured.wait_no_cli)
        assert left == []
        model_double.release()
        health = await client.call_tool("clinvk_health", {})
        assert not health.is_error
