"""One timed answer, three ways: the bare CLI run directly, and clinvk's three HTTP routes.

Every way yields a `Sample`: when the answer was complete, when its first and last piece of
text arrived, and how many separate pieces of text (and separate reads) the client saw.
Timing starts just before the process is spawned or the request is sent.
"""

from __future__ import annotations

import json
import os
import resource
import shlex
import signal
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.procstat import wall

#: Every answer must be this text (the double with 20 words), else the sample is an error.
EXPECTED = " ".join(f"w{i}" for i in range(20))
HTTP_TIMEOUT = httpx.Timeout(180.0, connect=10.0)
PROCESS_TIMEOUT = 180.0


@dataclass
class Sample:
    """The timings of one answer, in seconds from the start."""

    total: float
    first_text: float | None = None
    last_text: float | None = None
    #: Records that carried text (SSE events, NDJSON lines, CLI stdout lines).
    text_events: int = 0
    #: Distinct reads (HTTP body chunks / pipe reads) that carried text.
    text_chunks: int = 0
    #: Smallest gap between two text arrivals, to spot pieces that were batched together.
    min_gap: float | None = None
    text: str = ""
    error: str | None = None
    #: When the model double received the CLI's model call (sequential runs only).
    model_call: float | None = None
    #: CPU seconds of the CLI (direct runs only: RUSAGE_CHILDREN delta).
    cli_cpu: float | None = None
    #: The CLI's whole stdout (direct runs only), to replay it with a null CLI.
    stdout: bytes = field(default=b"", repr=False)
    #: Which read the last piece of text came in (to count reads, not pieces).
    last_chunk: int = field(default=-1, repr=False)

    def add_text(self, piece: str, at: float, chunk_id: int) -> None:
        """Record a piece of answer text that arrived `at` seconds in, in read `chunk_id`."""
        if not piece:
            return
        if self.first_text is None:
            self.first_text = at
        elif self.last_text is not None:
            gap = at - self.last_text
            self.min_gap = gap if self.min_gap is None else min(self.min_gap, gap)
        self.last_text = at
        self.text += piece
        self.text_events += 1
        if self.last_chunk != chunk_id:
            self.text_chunks += 1
            self.last_chunk = chunk_id

    def check(self) -> Sample:
        """Mark the sample as an error unless the whole expected answer arrived."""
        if self.error is None and self.text.strip() != EXPECTED:
            self.error = f"unexpected answer: {self.text[:200]!r}"
        return self


# -- the bare CLI ---------------------------------------------------------------------------


def direct_argv(name: str, settings: dict, prompt: str) -> list[str]:
    """The argv a person would type to run the CLI headless in its streaming JSON mode."""
    cmd, extra, model = settings["command"], settings["extra_flags"], settings["model"]
    if name == "claude":
        return [cmd, "-p", prompt, "--output-format", "stream-json", "--verbose",
                "--include-partial-messages", *extra, *(["--model", model] if model else [])]
    if name == "codex":
        return [cmd, "exec", "--json", "--skip-git-repo-check", *extra,
                *(["-m", model] if model else []), prompt]
    if name == "gemini":
        return [cmd, "-m", model, "-p", prompt, "-o", "stream-json", *extra]
    raise ValueError(name)


def direct_text(name: str, event: dict[str, Any]) -> str:
    """The answer text one stdout event of the CLI carries ("" for none)."""
    kind = event.get("type")
    if name == "claude" and kind == "stream_event" and event.get("parent_tool_use_id") is None:
        inner = event.get("event") or {}
        delta = inner.get("delta") or {}
        if inner.get("type") == "content_block_delta" and delta.get("type") == "text_delta":
            return delta.get("text") or ""
    if name == "codex" and kind == "item.completed":
        item = event.get("item") or {}
        if item.get("type") == "agent_message":
            return item.get("text") or ""
    if name == "gemini" and kind == "message" and event.get("role") == "assistant" \
            and event.get("delta"):
        return event.get("content") or ""
    return ""


def cli_env(settings: dict, prefixes: tuple[str, ...], base: tuple[str, ...]) -> dict[str, str]:
    """The environment clinvk would give the CLI: a base list, the CLI's prefixes, config."""
    env = {k: v for k, v in os.environ.items() if k in base or k.startswith(prefixes)}
    env.update(settings["env"])
    return env


def run_direct(name: str, argv: list[str], env: dict[str, str], cwd: str) -> Sample:
    """Run the CLI once (stdin /dev/null, own process group) and time its text and exit."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with tempfile.TemporaryFile() as err:
        t0 = wall()
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=err, cwd=cwd, env=env, start_new_session=True)
        sample = Sample(total=0.0)
        buffer, reads = b"", 0
        fd = proc.stdout.fileno()
        try:
            while chunk := os.read(fd, 65536):
                at = wall() - t0
                reads += 1
                sample.stdout += chunk
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    _feed_line(name, line, sample, at, reads)
            _feed_line(name, buffer, sample, wall() - t0, reads)
            proc.wait(PROCESS_TIMEOUT)
        finally:
            try:  # helpers the CLI left in its group
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            if proc.poll() is None:
                proc.wait()
            proc.stdout.close()
        sample.total = wall() - t0
        if proc.returncode != 0:
            err.seek(0)
            sample.error = f"exit {proc.returncode}: {err.read()[-500:].decode('replace')}"
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    sample.cli_cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return sample.check()


def _feed_line(name: str, line: bytes, sample: Sample, at: float, chunk: int) -> None:
    if not line.strip():
        return
    try:
        event = json.loads(line)
    except ValueError:
        return
    if isinstance(event, dict):
        sample.add_text(direct_text(name, event), at, chunk)


def write_null_cli(path: Path, transcript: bytes) -> Path:
    """A stand-in CLI that prints a recorded stdout at once, whatever its arguments: with
    it the CLI's own start-up noise is gone and clinvk's overhead shows alone."""
    data = path.with_suffix(".jsonl")
    data.write_bytes(transcript)
    path.write_text(f"#!/bin/sh\nexec cat {shlex.quote(str(data))}\n")
    path.chmod(0o755)
    return path


# -- clinvk's routes ------------------------------------------------------------------------


class Route:
    """One of clinvk's dialects: how to ask it, and where the text is in its answers."""

    name = ""
    path = ""
    #: What ends one streamed record: a line (NDJSON) or a blank line (SSE).
    separator = b"\n"

    def body(self, backend: str, prompt: str, stream: bool) -> dict[str, Any]:
        raise NotImplementedError

    def answer(self, data: dict[str, Any]) -> str:
        """The answer text of a non-streamed response."""
        raise NotImplementedError

    def reader(self) -> Callable[[bytes], list[str]]:
        """A fresh function giving the text pieces of each streamed record of one response."""
        raise NotImplementedError


class NativeRoute(Route):
    name, path = "native", "/api/v1/prompt"

    def body(self, backend: str, prompt: str, stream: bool) -> dict[str, Any]:
        body: dict[str, Any] = {"backend": backend, "prompt": prompt}
        if stream:
            body["output_format"] = "stream-json"
        return body

    def answer(self, data: dict[str, Any]) -> str:
        return data.get("output") or ""

    def reader(self) -> Callable[[bytes], list[str]]:
        deltas = False

        def texts(record: bytes) -> list[str]:
            nonlocal deltas
            line = json.loads(record)
            text = (line.get("content") or {}).get("text") or ""
            # Every delta is text; a whole message only when no delta carried it (codex).
            if line.get("type") == "delta":
                deltas = True
                return [text]
            return [text] if line.get("type") == "message" and not deltas else []

        return texts


class OpenAIRoute(Route):
    name, path, separator = "openai", "/openai/v1/chat/completions", b"\n\n"

    def body(self, backend: str, prompt: str, stream: bool) -> dict[str, Any]:
        return {"model": backend, "stream": stream,
                "messages": [{"role": "user", "content": prompt}]}

    def answer(self, data: dict[str, Any]) -> str:
        return data["choices"][0]["message"]["content"] or ""

    def reader(self) -> Callable[[bytes], list[str]]:
        def texts(record: bytes) -> list[str]:
            out = []
            for line in record.split(b"\n"):
                if line.startswith(b"data: ") and line != b"data: [DONE]":
                    for choice in json.loads(line[6:]).get("choices") or []:
                        out.append((choice.get("delta") or {}).get("content") or "")
            return out

        return texts


class AnthropicRoute(Route):
    name, path, separator = "anthropic", "/anthropic/v1/messages", b"\n\n"

    def body(self, backend: str, prompt: str, stream: bool) -> dict[str, Any]:
        return {"model": backend, "max_tokens": 1024, "stream": stream,
                "messages": [{"role": "user", "content": prompt}]}

    def answer(self, data: dict[str, Any]) -> str:
        return "".join(b.get("text", "") for b in data.get("content") or [])

    def reader(self) -> Callable[[bytes], list[str]]:
        def texts(record: bytes) -> list[str]:
            for line in record.split(b"\n"):
                if line.startswith(b"data: "):
                    event = json.loads(line[6:])
                    delta = event.get("delta") or {}
                    if (event.get("type") == "content_block_delta"
                            and delta.get("type") == "text_delta"):
                        return [delta.get("text") or ""]
            return []

        return texts


ROUTES: dict[str, Route] = {r.name: r for r in (NativeRoute(), OpenAIRoute(), AnthropicRoute())}


def ask(client: httpx.Client, base: str, route: Route, backend: str, prompt: str) -> Sample:
    """One non-streamed request, timed until the whole response body is in."""
    t0 = wall()
    try:
        response = client.post(base + route.path, json=route.body(backend, prompt, False),
                               timeout=HTTP_TIMEOUT)
        sample = Sample(total=wall() - t0)
    except httpx.HTTPError as exc:
        return Sample(total=wall() - t0, error=f"{type(exc).__name__}: {exc}")
    if response.status_code != 200:
        sample.error = f"HTTP {response.status_code}: {response.text[:300]}"
        return sample
    sample.text = route.answer(response.json())
    return sample.check()


def ask_streaming(client: httpx.Client, base: str, route: Route, backend: str,
                  prompt: str) -> Sample:
    """One streamed request: each record is timed when the body chunk holding it arrives."""
    t0 = wall()
    sample = Sample(total=0.0)
    chunks, buffer = 0, b""
    texts = route.reader()
    try:
        with client.stream("POST", base + route.path, json=route.body(backend, prompt, True),
                           timeout=HTTP_TIMEOUT) as response:
            if response.status_code != 200:
                response.read()
                sample.total = wall() - t0
                sample.error = f"HTTP {response.status_code}: {response.text[:300]}"
                return sample
            for chunk in response.iter_raw():
                at = wall() - t0
                chunks += 1
                buffer += chunk
                *records, buffer = buffer.split(route.separator)
                for record in records:
                    if record.strip():
                        for piece in texts(record):
                            sample.add_text(piece, at, chunks)
            if buffer.strip():
                for piece in texts(buffer):
                    sample.add_text(piece, wall() - t0, chunks)
    except httpx.HTTPError as exc:
        sample.error = f"{type(exc).__name__}: {exc}"
    sample.total = wall() - t0
    return sample.check()
