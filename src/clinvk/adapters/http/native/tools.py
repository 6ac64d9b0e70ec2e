"""The native prompt with the client's tools: the answer is the CLI's tool calls
(`tool_calls` and `stop_reason: "tool_calls"`; streamed: `tool_call` lines) while its run
stays parked, and a request with `tool_results` gets the run's continuation. The same
domain service as the chat dialects (domain/tool_runs.py); docs/tools.md has the flow.

The native API carries no conversation, so a result whose run is gone cannot be replayed:
it is a 400 naming the result."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from clinvk.adapters.http.headers import BACKEND_HEADER
from clinvk.adapters.http.native.schemas import (
    NativePromptRequest,
    PromptResponse,
    StreamLine,
)
from clinvk.adapters.http.streaming import (
    ClientDisconnected,
    Emit,
    EventStreamResponse,
    until_disconnect,
)
from clinvk.domain import events as ev
from clinvk.domain.errors import (
    BackendFailed,
    BackendTimeout,
    ClinvkError,
    InvalidRequest,
)
from clinvk.domain.models import PromptResult
from clinvk.domain.tool_runs import ToolRunService, ToolStep
from clinvk.domain.tools import ClientTool, ToolChoice, ToolOutcome, check_tools
from clinvk.ports import EventSink

_encode = msgspec.json.Encoder().encode


def applies(body: NativePromptRequest, runs: ToolRunService | None) -> bool:
    """Whether this request goes through client tools: it offers tools or carries results."""
    return runs is not None and bool(body.tools or body.tool_results)


def client_tools(body: NativePromptRequest) -> list[ClientTool]:
    """The request's tools, checked (names, schemas)."""
    tools = [ClientTool(name=t.name, description=t.description,
                        parameters=t.parameters or {"type": "object"})
             for t in body.tools or ()]
    check_tools(tools, [f"tools[{i}]" for i in range(len(tools))])
    return tools


def tool_choice(body: NativePromptRequest, names: list[str]) -> ToolChoice:
    """`auto` (default), `none`, `required` or one of the tools' names."""
    choice = body.tool_choice or "auto"
    if choice in ("auto", "none", "required") or choice in names:
        return choice
    raise InvalidRequest(
        f"tool_choice must be 'auto', 'none', 'required' or the name of one of tools, "
        f"not {choice!r}", field="tool_choice")


def tool_results(body: NativePromptRequest, runs: ToolRunService) -> list[ToolOutcome]:
    """The results, each for a call a parked run waits for (nothing to replay otherwise)."""
    results = []
    for i, result in enumerate(body.tool_results or ()):
        if not runs.knows(result.call_id):
            raise InvalidRequest(
                f"tool_results[{i}].call_id {result.call_id!r}: no run waits for this call "
                "(unknown, already answered, or its run ended: it waited longer than "
                "server.tool_result_timeout_secs, or the server restarted); the native API "
                "carries no conversation to replay, so send the prompt again",
                field=f"tool_results[{i}].call_id")
        results.append(ToolOutcome(call_id=result.call_id, output=result.output,
                                   is_error=result.is_error))
    return results


def _paused(body: NativePromptRequest, step: ToolStep, started: float) -> PromptResponse:
    return PromptResponse(
        backend=body.backend, exit_code=0, duration_ms=int((time.monotonic() - started) * 1000),
        output="", token_usage=step.usage, stop_reason="tool_calls",
        tool_calls=list(step.calls),
    )


class ToolPrompt:
    """The native prompt handler for requests with client tools."""

    def __init__(self, runs: ToolRunService, heartbeat_secs: float,
                 answer: Callable[[PromptResult], PromptResponse],
                 problem: Callable[[ClinvkError], Response]) -> None:
        self.runs = runs
        self.heartbeat_secs = heartbeat_secs
        self.answer = answer
        self.problem = problem

    def check(self, body: NativePromptRequest) -> tuple[list[ClientTool], ToolChoice,
                                                        list[ToolOutcome]]:
        """Refuse bad tools and results before anything runs."""
        if body.tools and body.tool_results:
            raise InvalidRequest("send either tools (a new run) or tool_results (the "
                                 "continuation of one), not both", field="tool_results")
        if body.tools and body.session_id:
            raise InvalidRequest("session_id cannot be combined with tools: a run with "
                                 "client tools keeps no session", field="session_id")
        tools = client_tools(body)
        return tools, tool_choice(body, [t.name for t in tools]), tool_results(body, self.runs)

    async def _step(self, body: NativePromptRequest, tools: list[ClientTool],
                    choice: ToolChoice, results: list[ToolOutcome],
                    on_event: EventSink | None) -> ToolStep:
        if results:
            step = await self.runs.resume(results, field="tool_results", on_event=on_event)
            if step is None:  # its run ended since the check
                raise InvalidRequest(
                    "the run waiting for these tool results has ended; send the prompt again",
                    field="tool_results")
            return step
        return await self.runs.start(body.domain(), tools, choice=choice,
                                     builtin_tools=body.builtin_tools, on_event=on_event)

    async def respond(self, request: Request, body: NativePromptRequest,
                      stream: bool) -> Response:
        """Answer with the run's result, or with its tool calls."""
        tools, choice, results = self.check(body)
        if stream:
            return self._stream(body, tools, choice, results)  # type: ignore[return-value]
        started = time.monotonic()
        try:
            step = await until_disconnect(
                request, lambda: self._step(body, tools, choice, results, None))
        except ClientDisconnected:
            return Response(status_code=499)
        value = self.answer(step.result) if step.result is not None else _paused(
            body, step, started)
        return Response(_encode(value), headers={BACKEND_HEADER: body.backend},
                        media_type="application/json")

    def _stream(self, body: NativePromptRequest, tools: list[ClientTool], choice: ToolChoice,
                results: list[ToolOutcome]) -> EventStreamResponse:
        backend = body.backend

        def line(kind: str, content: dict[str, Any]) -> bytes:
            return _encode(StreamLine(type=kind, backend=backend, content=content)) + b"\n"

        async def produce(emit: Emit, response: EventStreamResponse) -> None:
            started = time.monotonic()
            if results:  # a parked run goes on: heartbeats may start the stream now
                response.opening = lambda: b""

            async def send(event: ev.StreamEvent) -> None:
                content = msgspec.structs.asdict(event)
                content.pop("session_id", None)
                await emit(line(type(event).__struct_config__.tag, content))

            try:
                step = await self._step(body, tools, choice, results, send)
            except (BackendFailed, BackendTimeout) as exc:
                if not response.started:
                    raise
                await emit(line("error", {"message": exc.message, "code": exc.code}))
                return
            if step.result is not None:
                return  # the service's `done` line ended it
            out = b"".join(line("tool_call", msgspec.to_builtins(call)) for call in step.calls)
            done = ev.Done(exit_code=0, duration_ms=int((time.monotonic() - started) * 1000),
                           usage=step.usage)
            content = {**msgspec.to_builtins(done), "stop_reason": "tool_calls"}
            content.pop("type", None)
            await emit(out + line("done", content))

        def early_error(exc: BaseException) -> Response | None:
            return self.problem(exc) if isinstance(exc, ClinvkError) else None

        return EventStreamResponse(
            produce,
            media_type="application/x-ndjson",
            heartbeat=_encode(StreamLine(type="heartbeat", backend=backend)) + b"\n",
            heartbeat_secs=self.heartbeat_secs,
            on_early_error=early_error,
            headers={BACKEND_HEADER: backend},
        )
