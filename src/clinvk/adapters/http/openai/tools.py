"""Chat completions with the client's tools (function calling): the answer is the CLI's
tool calls (`tool_calls`, `finish_reason: "tool_calls"`) while its run stays parked, and
the request carrying the results (`role: "tool"` messages) gets the run's continuation.
See domain/tool_runs.py for the flow and docs/tools.md for what each CLI does."""

from __future__ import annotations

import time
import uuid
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from clinvk.adapters.http.headers import BACKEND_HEADER
from clinvk.adapters.http.openai.errors import (
    envelope,
    error_response,
    internal_envelope,
)
from clinvk.adapters.http.openai.schemas import (
    OpenAIAssistantMessage,
    OpenAIChatRequest,
    OpenAIToolMessage,
)
from clinvk.adapters.http.openai.translate import content_text, finish_reason, usage
from clinvk.adapters.http.streaming import (
    ClientDisconnected,
    Emit,
    EventStreamResponse,
    until_disconnect,
)
from clinvk.domain import events as ev
from clinvk.domain.chat import TextStream
from clinvk.domain.errors import ClinvkError, InvalidRequest
from clinvk.domain.models import PromptRequest, TokenUsage
from clinvk.domain.tool_runs import ToolRunService, ToolStep
from clinvk.domain.tools import ClientTool, ToolChoice, ToolOutcome, check_tools
from clinvk.ports import EventSink

#: Says that a tool result's run was gone and a fresh run answered the whole conversation.
REPLAY_HEADER = "X-Clinvk-Tool-Replay"

_encode = msgspec.json.Encoder().encode


def client_tools(body: OpenAIChatRequest) -> list[ClientTool]:
    """The request's function tools; any other kind is a 400 naming it."""
    tools: list[ClientTool] = []
    for i, entry in enumerate(body.tools or ()):
        field = f"tools[{i}]"
        kind = entry.get("type", "function")
        function = entry.get("function")
        if kind != "function" or not isinstance(function, dict):
            raise InvalidRequest(
                f"{field}: only function tools are supported (type 'function' with a "
                "'function' object)", field=field,
            )
        name, params = function.get("name"), function.get("parameters", {"type": "object"})
        if not isinstance(name, str):
            raise InvalidRequest(f"{field}.function.name must be a string",
                                 field=f"{field}.function.name")
        if not isinstance(params, dict):
            raise InvalidRequest(f"invalid JSON Schema: {field}.function.parameters must be "
                                 "an object", field=f"{field}.function.parameters")
        tools.append(ClientTool(name=name, description=str(function.get("description") or ""),
                                parameters=params or {"type": "object"}))
    check_tools(tools, [f"tools[{i}].function" for i in range(len(tools))])
    return tools


def tool_choice(body: OpenAIChatRequest, names: list[str]) -> ToolChoice:
    """`auto`, `none`, `required` or a tool's name; a name not offered is a 400."""
    choice = body.tool_choice
    if choice is None:
        return "auto"
    if isinstance(choice, str):
        if choice in ("auto", "none", "required"):
            return choice
        raise InvalidRequest("tool_choice must be 'auto', 'none', 'required' or a named "
                             "function", field="tool_choice")
    function = choice.get("function") if isinstance(choice, dict) else None
    name = function.get("name") if isinstance(function, dict) else None
    if name not in names:
        raise InvalidRequest(f"tool_choice names a function that is not in tools: {name!r}",
                             field="tool_choice")
    return name


def tool_results(body: OpenAIChatRequest) -> list[ToolOutcome]:
    """The `tool` messages after the last assistant message (the results the client
    sends now); each must answer a call an assistant message of the conversation made."""
    messages = body.messages
    start = 0
    for i in range(len(messages) - 1, -1, -1):
        if isinstance(messages[i], OpenAIAssistantMessage):
            start = i + 1
            break
    known = {call.id for m in messages if isinstance(m, OpenAIAssistantMessage)
             for call in m.tool_calls or () if call.id}
    results = []
    for i in range(start, len(messages)):
        message = messages[i]
        if not isinstance(message, OpenAIToolMessage):
            continue
        call_id = message.tool_call_id
        if not call_id or call_id not in known:
            raise InvalidRequest(
                f"messages[{i}].tool_call_id {call_id!r} answers no tool call of the "
                "conversation (no assistant message carries it), so there is nothing to "
                "resume or replay", field=f"messages[{i}].tool_call_id",
            )
        text = content_text(message.content, f"messages[{i}]")
        results.append(ToolOutcome(call_id=call_id, output=text))
    return results


def only_results_follow(body: OpenAIChatRequest) -> bool:
    """Whether nothing but `tool` messages follows the last assistant message: a parked
    run can only be given results, so anything more (a user turn) means a fresh run."""
    messages = body.messages
    for message in reversed(messages):
        if isinstance(message, OpenAIAssistantMessage):
            return True
        if not isinstance(message, OpenAIToolMessage):
            return False
    return True


def applies(body: OpenAIChatRequest, runs: ToolRunService | None) -> bool:
    """Whether this request goes through client tools: it offers tools, or it carries
    results a parked run waits for."""
    if runs is None:
        return False
    if body.tools:
        return True
    return any(isinstance(m, OpenAIToolMessage) and m.tool_call_id and runs.knows(m.tool_call_id)
               for m in body.messages)


def _calls_wire(step: ToolStep) -> list[dict[str, Any]]:
    return [
        {"id": c.id, "type": "function",
         "function": {"name": c.name, "arguments": _encode(c.arguments).decode()}}
        for c in step.calls
    ]


class ToolChat:
    """The chat-completions handler for requests with client tools."""

    def __init__(self, runs: ToolRunService, heartbeat_secs: float) -> None:
        self.runs = runs
        self.heartbeat_secs = heartbeat_secs

    async def _step(self, body: OpenAIChatRequest, prompt: PromptRequest,
                    on_event: EventSink | None) -> tuple[ToolStep, bool]:
        tools = client_tools(body)
        choice = tool_choice(body, [t.name for t in tools])
        results = tool_results(body)
        if results and only_results_follow(body):
            step = await self.runs.resume(results, field="messages", on_event=on_event)
            if step is not None:
                return step, False
        builtin = body.clinvk.builtin_tools if body.clinvk else None
        step = await self.runs.start(prompt, tools, choice=choice, builtin_tools=builtin,
                                     on_event=on_event)
        return step, bool(results)

    def check(self, body: OpenAIChatRequest) -> None:
        """Refuse bad tools before anything runs (also for streams, whose errors would
        otherwise come after the 200)."""
        tools = client_tools(body)
        tool_choice(body, [t.name for t in tools])
        tool_results(body)

    async def answer(self, request: Request, body: OpenAIChatRequest,
                     prompt: PromptRequest) -> Response:
        """Answer with text, or with the CLI's tool calls."""
        self.check(body)
        if body.stream:
            return self._stream(body, prompt)  # type: ignore[return-value]
        texts, pieces = TextStream(), []

        async def collect(event: ev.StreamEvent) -> None:
            text = texts.text(event)
            if text:
                pieces.append(text)

        try:
            step, replay = await until_disconnect(request, lambda: self._step(body, prompt,
                                                                              collect))
        except ClientDisconnected:
            return Response(status_code=499)
        headers = {BACKEND_HEADER: prompt.backend}
        if replay:
            headers[REPLAY_HEADER] = "1"
        if step.result is not None:
            result = step.result
            message: dict[str, Any] = {"role": "assistant", "content": result.output,
                                       "refusal": None}
            reason: str = finish_reason(result.stop_reason)
            tokens = result.token_usage
        else:
            message = {"role": "assistant", "content": "".join(pieces) or None,
                       "refusal": None, "tool_calls": _calls_wire(step)}
            reason, tokens = "tool_calls", step.usage
        completion = {
            "id": "chatcmpl-" + uuid.uuid4().hex, "object": "chat.completion",
            "created": int(time.time()), "model": body.model,
            "choices": [{"index": 0, "message": message, "logprobs": None,
                         "finish_reason": reason}],
            "usage": usage(tokens),
        }
        return Response(_encode(completion), headers=headers, media_type="application/json")

    def _stream(self, body: OpenAIChatRequest, prompt: PromptRequest) -> EventStreamResponse:
        completion_id, created = "chatcmpl-" + uuid.uuid4().hex, int(time.time())
        include_usage = bool(body.stream_options and body.stream_options.include_usage)

        def chunk(delta: dict[str, Any] | None, finish: str | None = None,
                  final: TokenUsage | None = None) -> bytes:
            value: dict[str, Any] = {
                "id": completion_id, "object": "chat.completion.chunk", "created": created,
                "model": body.model,
                "choices": [] if delta is None else [
                    {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
            }
            if include_usage:
                value["usage"] = usage(final) if final is not None else None
            return b"data: " + _encode(value) + b"\n\n"

        async def produce(emit: Emit, response: EventStreamResponse) -> None:
            texts = TextStream()

            async def on_event(event: ev.StreamEvent) -> None:
                text = texts.text(event)
                if text:
                    await emit(chunk({"content": text}))

            async def step() -> tuple[ToolStep, bool]:
                results = tool_results(body)
                if results and only_results_follow(body):
                    found = await self.runs.resume(results, field="messages", on_event=on_event)
                    if found is not None:
                        return found, False
                if results and not response.started:
                    response.headers[REPLAY_HEADER] = "1"
                tools = client_tools(body)
                builtin = body.clinvk.builtin_tools if body.clinvk else None
                started = await self.runs.start(
                    prompt, tools, choice=tool_choice(body, [t.name for t in tools]),
                    builtin_tools=builtin, on_event=on_event)
                return started, bool(results)

            try:
                done, _ = await step()
            except ClinvkError as exc:
                if not response.started:
                    raise
                await emit(b"data: " + _encode(envelope(exc)) + b"\n\n")
                return
            except Exception:
                if not response.started:
                    raise
                await emit(b"data: " + _encode(internal_envelope()) + b"\n\n")
                raise
            # The rest of the answer in one write: each write wakes the client.
            if done.result is not None:
                out = chunk({}, finish_reason(done.result.stop_reason))
                if include_usage:
                    out += chunk(None, final=done.result.token_usage)
            else:
                out = b"".join(chunk({"tool_calls": [{"index": i, **call}]})
                               for i, call in enumerate(_calls_wire(done)))
                out += chunk({}, "tool_calls")
                if include_usage:
                    out += chunk(None, final=done.usage)
            await emit(out + b"data: [DONE]\n\n", last=True)

        def early_error(exc: BaseException) -> Response:
            if isinstance(exc, ClinvkError):
                return error_response(exc)
            raise exc

        return EventStreamResponse(
            produce,
            media_type="text/event-stream",
            heartbeat=b": ping\n\n",
            heartbeat_secs=self.heartbeat_secs,
            on_early_error=early_error,
            headers={BACKEND_HEADER: prompt.backend},
            opening=lambda: chunk({"role": "assistant", "content": ""}),
        )
