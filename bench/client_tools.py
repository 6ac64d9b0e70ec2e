"""clinvk's own time in a client tool call, both ways, without a real CLI.

Three processes, as in real use: clinvk (the app on uvicorn, the bridge, fakes for
everything else), a stand-in CLI (its own process: an MCP client of the run's bridge over
HTTP, which calls `get_weather`) and the client (its own process: httpx, as the OpenAI SDK,
against `/openai/v1/chat/completions`, answering the call with a result). Measured with
`time.perf_counter` (CLOCK_MONOTONIC: one clock for every process on the machine):

- out: from the bridge taking the CLI's `tools/call` (its ASGI app called, the request
  parsed by uvicorn) to the client holding the HTTP answer with `tool_calls`;
- back: from the client sending the request with the result to the bridge writing the
  `tools/call` result to the CLI.

Each is split into stages (OUT, BACK) by timing probes put around a few methods for the
run only, so the cost of each hop shows. `cli_ms` is the stand-in CLI's own view (its
HTTP client included). The CLI announces its call (a tool_use event, as claude prints
one) before making it (`--announce before`, the default), after it (`after`: the
announcement comes later, so the call waits for it) or never (`never`: the calls are
gathered for SETTLE_SECS, as for a CLI that does not say how many calls it makes).

Run: `.venv/bin/python -m bench.client_tools [--rounds N] [--stream] [--announce ...]`;
prints JSON with p50 / p90 / max in milliseconds and the load average before and after.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx
from anyio.abc import Process
from anyio.streams.buffered import BufferedByteReceiveStream

from clinvk.adapters.http.app import create_app
from clinvk.adapters.mcp_bridge.channel import BridgeChannel
from clinvk.adapters.mcp_bridge.endpoint import BridgeEndpoint
from clinvk.domain import events as ev
from clinvk.domain.config import Config, ServerConfig
from clinvk.domain.models import BackendInfo, RunResult, RunSpec
from clinvk.domain.tool_runs import ToolRunService
from clinvk.entrypoints.bootstrap import bootstrap
from tests.fakes import FakeClock, FakeIds, FakeSessionStore
from tests.support.live import LiveServer

ROOT = Path(__file__).resolve().parent.parent
WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}}}}
ROUND_HEADER = "x-bench-round"
WARM_UP = 3

#: (stage, from mark, to mark): the way out, CLI's call to the client's answer.
OUT = (
    ("bridge: request read and decoded", "bridge.receipt", "channel.call"),
    ("channel: call queued to the run", "channel.call", "channel.taken"),
    ("run: parked, the request's step ready", "channel.taken", "run.parked"),
    ("http: answer made, headers sent", "run.parked", "out.app.start"),
    ("http: body sent", "out.app.start", "out.app.end"),
    ("loopback and the client reading it", "out.app.end", "client.got"),
)
#: The way back, the client's result to the CLI's call returning.
BACK = (
    ("client sending, loopback, uvicorn", "client.send", "back.app.receipt"),
    ("http: middleware, body, decode, checks", "back.app.receipt", "run.resume"),
    ("run: parked run found, result handed", "run.resume", "channel.answer"),
    ("bridge: call woken, result written", "channel.answer", "bridge.write"),
)


class Marks:
    """The first time each named point is reached, per round (the client names the round
    of each request in a header; everything after it belongs to that round), and for
    clinvk's own points the CPU time of its thread then."""

    def __init__(self) -> None:
        self.rounds: dict[int, dict[str, float]] = {}
        self.cpu: dict[int, dict[str, float]] = {}
        self.round = -1

    def mark(self, name: str, at: float | None = None, cpu: float | None = None) -> None:
        if self.round < 0:
            return
        marks = self.rounds.setdefault(self.round, {})
        if name not in marks:
            marks[name] = time.perf_counter() if at is None else at
            if at is None or cpu is not None:
                self.cpu.setdefault(self.round, {})[name] = \
                    time.thread_time() if cpu is None else cpu


@contextlib.contextmanager
def probed(marks: Marks) -> Iterator[None]:
    """Timing probes around the bridge's, the run's and the channel's methods, undone
    after."""
    saved = [(cls, name, cls.__dict__[name]) for cls, name in (
        (BridgeEndpoint, "__call__"), (BridgeChannel, "call"), (BridgeChannel, "next_call"),
        (BridgeChannel, "answer"), (ToolRunService, "start"), (ToolRunService, "resume"))]
    endpoint_call = BridgeEndpoint.__call__
    channel_call, next_call = BridgeChannel.call, BridgeChannel.next_call
    answer, start, resume = BridgeChannel.answer, ToolRunService.start, ToolRunService.resume

    async def endpoint(self, scope, receive, send):
        entered, cpu, is_call = time.perf_counter(), time.thread_time(), False

        async def reading():
            nonlocal is_call
            message = await receive()
            if b'"tools/call"' in message.get("body", b""):
                is_call = True
                marks.mark("bridge.receipt", entered, cpu)
            return message

        async def writing(message):
            await send(message)
            if (is_call and message["type"] == "http.response.body"
                    and not message.get("more_body")):
                marks.mark("bridge.write")

        await endpoint_call(self, scope, reading, writing)

    async def probed_call(self, name, arguments, **kwargs):
        marks.mark("channel.call")
        return await channel_call(self, name, arguments, **kwargs)

    async def probed_next_call(self):
        call = await next_call(self)
        marks.mark("channel.taken")
        return call

    def probed_answer(self, outcome):
        marks.mark("channel.answer")
        return answer(self, outcome)

    async def probed_start(self, *args, **kwargs):
        step = await start(self, *args, **kwargs)
        marks.mark("run.parked")
        return step

    async def probed_resume(self, *args, **kwargs):
        marks.mark("run.resume")
        return await resume(self, *args, **kwargs)

    BridgeEndpoint.__call__ = endpoint
    BridgeChannel.call = probed_call
    BridgeChannel.next_call = probed_next_call
    BridgeChannel.answer = probed_answer
    ToolRunService.start = probed_start
    ToolRunService.resume = probed_resume
    try:
        yield
    finally:
        for cls, name, value in saved:
            setattr(cls, name, value)


def probed_app(app, marks: Marks):
    """The server's ASGI app, marking when a request comes in and its answer goes out."""

    async def wrapped(scope, receive, send):
        headers = dict(scope.get("headers") or ())
        tag = headers.get(ROUND_HEADER.encode())
        if scope["type"] != "http" or tag is None:
            return await app(scope, receive, send)
        number, phase = tag.decode().split(":")
        marks.round = int(number)
        marks.mark(f"{phase}.app.receipt")

        async def writing(message):
            await send(message)
            if message["type"] == "http.response.start":
                marks.mark(f"{phase}.app.start")
            elif not message.get("more_body"):
                marks.mark(f"{phase}.app.end")

        await app(scope, receive, writing)

    return wrapped


class McpCliRunner:
    """A CLI stand-in: for a run with tools, its own process (`--role cli`) speaks MCP to
    the run's bridge; the call is announced as claude does, before it, after it or not."""

    def __init__(self, marks: Marks, announce: str) -> None:
        self.marks = marks
        self.announce = announce
        self.process: Process | None = None
        self.lines: BufferedByteReceiveStream | None = None

    def names(self) -> list[str]:
        return ["claude"]

    def info(self, backend: str) -> BackendInfo:
        return BackendInfo(name=backend, available=True)

    def command(self, spec: RunSpec) -> tuple[str, ...]:
        return ("stand-in",)

    async def _line(self) -> dict:
        assert self.lines is not None
        return json.loads(await self.lines.receive_until(b"\n", 1 << 20))

    async def run(self, spec: RunSpec, on_event=None) -> RunResult:
        assert spec.tools is not None and on_event is not None
        if self.process is None:
            self.process = await anyio.open_process(
                [sys.executable, "-m", "bench.client_tools", "--role", "cli",
                 "--announce", self.announce], cwd=ROOT,
                stderr=None)
            assert self.process.stdout is not None
            self.lines = BufferedByteReceiveStream(self.process.stdout)
        assert self.process.stdin is not None
        announcement = ev.ToolUse(name="mcp__client__get_weather", input={"city": "P"})
        if self.announce == "before":
            await on_event(announcement)
        await self.process.stdin.send(spec.tools.url.encode() + b"\n")
        if self.announce == "after":
            await self._line()  # the call is on its way
            await on_event(announcement)
        done = await self._line()
        self.marks.mark("cli.send", done["sent"])
        self.marks.mark("cli.got", done["at"])
        await on_event(ev.TextDelta(text=done["text"]))
        return RunResult(backend="claude", output=done["text"], exit_code=0, duration_ms=1)


def cli_role(announce: str) -> None:
    """The stand-in CLI's process: for each bridge URL on stdin, initialize, tools/list and
    one tools/call over one connection, printing when the call went out (at once when its
    announcement is to follow) and its result."""
    headers = {"accept": "application/json, text/event-stream",
               "content-type": "application/json"}
    gc.freeze()  # as in the client's process
    for line in sys.stdin:
        url = urllib.parse.urlsplit(line.strip())
        connection = http.client.HTTPConnection(url.hostname, url.port)

        def post(body: dict, connection=connection, url=url) -> bytes:
            connection.request("POST", url.path, json.dumps(body).encode(), headers)
            return connection.getresponse().read()

        for i, method in enumerate(("initialize", "tools/list")):
            post({"jsonrpc": "2.0", "id": i, "method": method, "params": {}})
        call = {"jsonrpc": "2.0", "id": 9, "method": "tools/call",
                "params": {"name": "get_weather", "arguments": {"city": "P"}}}
        sent = time.perf_counter()
        connection.request("POST", url.path, json.dumps(call).encode(), headers)
        if announce == "after":
            print(json.dumps({"at": sent}), flush=True)
        body = connection.getresponse().read()
        got = time.perf_counter()
        connection.close()
        data = next(x[6:] for x in body.decode().splitlines() if x.startswith("data: "))
        text = json.loads(data)["result"]["content"][0]["text"]
        print(json.dumps({"sent": sent, "at": got, "text": text}), flush=True)


def _message(client: httpx.Client, url: str, body: dict, headers: dict,
             stream: bool) -> tuple[dict, float]:
    """The chat answer's message (from the stream's chunks when streamed) and when the
    whole answer was in."""
    if not stream:
        r = client.post(url, json=body, headers=headers)
        got = time.perf_counter()
        return r.json()["choices"][0]["message"], got
    r = client.post(url, json={**body, "stream": True}, headers=headers)
    got = time.perf_counter()
    calls: dict[int, dict] = {}
    for line in r.text.splitlines():
        if line.startswith("data: {"):
            for part in json.loads(line[6:])["choices"][0]["delta"].get("tool_calls") or ():
                calls.setdefault(part["index"], part)
    return {"role": "assistant", "content": None, "tool_calls": list(calls.values())}, got


def client_role(url: str, rounds: int, stream: bool) -> None:
    """The client's process: each round, ask with tools, answer the call; print the times."""
    # What is imported stays out of the collector's way: a full collection over it took
    # ~40 ms in one round in a hundred, in this process, not in clinvk's.
    gc.freeze()
    marks = []
    ask = [{"role": "user", "content": "weather?"}]
    with httpx.Client(timeout=60) as client:
        for n in range(rounds):
            message, got = _message(client, url, {"model": "claude", "messages": ask,
                                                  "tools": [WEATHER]},
                                    {ROUND_HEADER: f"{n}:out"}, stream)
            result = {"role": "tool", "tool_call_id": message["tool_calls"][0]["id"],
                      "content": "sunny"}
            send = time.perf_counter()
            _message(client, url, {"model": "claude", "tools": [WEATHER],
                                   "messages": [*ask, message, result]},
                     {ROUND_HEADER: f"{n}:back"}, stream)
            marks.append({"client.got": got, "client.send": send})
    print(json.dumps(marks))


def _stats(values: list[float]) -> dict[str, float]:
    ms = sorted(v * 1000 for v in values)
    return {"p50": round(statistics.median(ms), 2),
            "p90": round(ms[int(0.9 * (len(ms) - 1))], 2), "max": round(ms[-1], 2)}


def _span(rounds: list[dict[str, float]], start: str, end: str) -> dict[str, float]:
    return _stats([r[end] - r[start] for r in rounds])


def _stages(rounds: list[dict[str, float]], cpu: list[dict[str, float]],
            stages: tuple[tuple[str, str, str], ...]) -> dict[str, dict[str, float]]:
    """Each stage's wall time and, when both ends are clinvk's, its CPU time (p50)."""
    out = {}
    for name, start, end in stages:
        out[name] = _span(rounds, start, end)
        if all(start in c and end in c for c in cpu):
            out[name]["cpu_p50"] = _span(cpu, start, end)["p50"]
    return out


def measure(rounds: int, *, stream: bool = False, announce: str = "before") -> dict:
    """Run the rounds; the numbers as a dict."""
    marks = Marks()
    runner = McpCliRunner(marks, announce)
    config = Config(server=ServerConfig(default_workdir=tempfile.gettempdir()))
    services = bootstrap(config, runner=runner, store=FakeSessionStore(), clock=FakeClock(),
                         ids=FakeIds())
    load_before = os.getloadavg()
    app = probed_app(create_app(services), marks)
    with probed(marks), LiveServer(app) as server:
        used = time.process_time()
        argv = [sys.executable, "-m", "bench.client_tools", "--role", "client",
                "--url", server.url + "/openai/v1/chat/completions",
                "--rounds", str(rounds + WARM_UP)]
        client = subprocess.run([*argv, *(["--stream"] if stream else [])], cwd=ROOT,
                                check=True, capture_output=True, text=True)
        used = time.process_time() - used
    for n, client_marks in enumerate(json.loads(client.stdout)):
        marks.rounds[n].update(client_marks)
    measured = [marks.rounds[n] for n in sorted(marks.rounds) if n >= WARM_UP]
    cpu = [marks.cpu[n] for n in sorted(marks.rounds) if n >= WARM_UP]
    return {
        "rounds": rounds, "stream": stream, "announce": announce,
        "load_average": {"before": [round(x, 2) for x in load_before],
                         "after": [round(x, 2) for x in os.getloadavg()]},
        # clinvk's whole work for a round (the run's start and end included), in CPU time:
        # steadier than the spans when other processes share the machine.
        "server_cpu_ms_per_round": round(used * 1000 / (rounds + WARM_UP), 2),
        "out_ms": _span(measured, "bridge.receipt", "client.got"),
        "back_ms": _span(measured, "client.send", "bridge.write"),
        # clinvk's CPU time on each way (its thread's, from the request's arrival to the
        # answer's last write): what it costs whatever else runs on the machine.
        "out_cpu_ms": _span(cpu, "bridge.receipt", "out.app.end"),
        "back_cpu_ms": _span(cpu, "back.app.receipt", "bridge.write"),
        "out_stages_ms": _stages(measured, cpu, OUT),
        "back_stages_ms": _stages(measured, cpu, BACK),
        "cli_ms": {"call_to_client": _span(measured, "cli.send", "client.got"),
                   "client_to_result": _span(measured, "client.send", "cli.got")},
    }


def main() -> None:
    """Run the rounds and print the numbers (or play the client's or the CLI's part)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--stream", action="store_true", help="streamed chat answers")
    parser.add_argument("--announce", choices=("before", "after", "never"),
                        default="before", help="when the CLI announces its call")
    parser.add_argument("--role", choices=("bench", "client", "cli"), default="bench",
                        help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "cli":
        return cli_role(args.announce)
    if args.role == "client":
        return client_role(args.url, args.rounds, args.stream)
    print(json.dumps(measure(args.rounds, stream=args.stream, announce=args.announce),
                     indent=2))


if __name__ == "__main__":
    main()
