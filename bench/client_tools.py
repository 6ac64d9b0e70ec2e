"""clinvk's own time in a client tool call, both ways, without a real CLI.

A stand-in CLI (a runner that speaks MCP to the run's bridge over HTTP, as the CLIs do)
calls `get_weather`; the OpenAI SDK-shaped client gets the call and answers it. Measured:

- out: from the stand-in CLI sending `tools/call` to the client holding the HTTP answer
  with `tool_calls` (bridge, parking, the chat-completions answer);
- back: from the client sending the request with the result to the stand-in CLI holding
  the `tools/call` result (matching the parked run, the bridge's answer).

Run: `.venv/bin/python -m bench.client_tools [--rounds N]`; prints JSON with p50 / p90 / max
in milliseconds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time

import httpx

from clinvk.adapters.http.app import create_app
from clinvk.domain import events as ev
from clinvk.domain.config import Config, ServerConfig
from clinvk.domain.models import BackendInfo, RunResult, RunSpec
from clinvk.entrypoints.bootstrap import bootstrap
from tests.fakes import FakeClock, FakeIds, FakeSessionStore
from tests.support.live import LiveServer

WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}}}}


class McpCliRunner:
    """A CLI stand-in: for a run with tools, an MCP client of its bridge (initialize,
    tools/list, one tools/call), announcing the call first as claude does."""

    def __init__(self) -> None:
        self.call_sent: list[float] = []
        self.result_got: list[float] = []

    def names(self) -> list[str]:
        return ["claude"]

    def info(self, backend: str) -> BackendInfo:
        return BackendInfo(name=backend, available=True)

    def command(self, spec: RunSpec) -> tuple[str, ...]:
        return ("stand-in",)

    async def run(self, spec: RunSpec, on_event=None) -> RunResult:
        assert spec.tools is not None and on_event is not None
        headers = {"accept": "application/json, text/event-stream"}
        async with httpx.AsyncClient(timeout=60) as http:
            for i, method in enumerate(("initialize", "tools/list")):
                await http.post(spec.tools.url, headers=headers,
                                json={"jsonrpc": "2.0", "id": i, "method": method, "params": {}})
            await on_event(ev.ToolUse(name="mcp__client__get_weather", input={"city": "P"}))
            self.call_sent.append(time.perf_counter())
            r = await http.post(spec.tools.url, headers=headers, json={
                "jsonrpc": "2.0", "id": 9, "method": "tools/call",
                "params": {"name": "get_weather", "arguments": {"city": "P"}}})
            self.result_got.append(time.perf_counter())
        data = next(line[6:] for line in r.text.splitlines() if line.startswith("data: "))
        text = json.loads(data)["result"]["content"][0]["text"]
        await on_event(ev.TextDelta(text=text))
        return RunResult(backend="claude", output=text, exit_code=0, duration_ms=1)


def _stats(values: list[float]) -> dict[str, float]:
    ms = sorted(v * 1000 for v in values)
    return {"p50": round(statistics.median(ms), 2),
            "p90": round(ms[int(0.9 * (len(ms) - 1))], 2), "max": round(ms[-1], 2)}


def main() -> None:
    """Run the rounds and print the numbers."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=50)
    rounds = parser.parse_args().rounds
    runner = McpCliRunner()
    config = Config(server=ServerConfig(default_workdir=tempfile.gettempdir()))
    services = bootstrap(config, runner=runner, store=FakeSessionStore(), clock=FakeClock(),
                         ids=FakeIds())
    out, back = [], []
    with LiveServer(create_app(services)) as server, httpx.Client(timeout=60) as client:
        url = server.url + "/openai/v1/chat/completions"
        ask = [{"role": "user", "content": "weather?"}]
        for _ in range(rounds + 3):  # the first rounds warm up and are dropped
            first = client.post(url, json={"model": "claude", "messages": ask,
                                           "tools": [WEATHER]})
            got = time.perf_counter()
            message = first.json()["choices"][0]["message"]
            out.append(got - runner.call_sent[-1])
            result = {"role": "tool", "tool_call_id": message["tool_calls"][0]["id"],
                      "content": "sunny"}
            sent = time.perf_counter()
            client.post(url, json={"model": "claude", "tools": [WEATHER],
                                   "messages": [*ask, message, result]})
            back.append(runner.result_got[-1] - sent)
    print(json.dumps({"rounds": rounds, "out_ms": _stats(out[3:]),
                      "back_ms": _stats(back[3:])}, indent=2))


if __name__ == "__main__":
    main()
