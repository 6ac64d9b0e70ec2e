"""Messages with the client's tools: the answer is the CLI's tool calls (`tool_use`
blocks, `stop_reason: "tool_use"`) while its run stays parked, and the request carrying
the results (`tool_result` blocks) gets the run's continuation. See domain/tool_runs.py
for the flow and docs/tools.md for what each CLI does."""

from __future__ import annotations

from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from clinvk.adapters.http.anthropic import translate
from clinvk.adapters.http.anthropic.blocks import content_text
from clinvk.adapters.http.anthropic.errors import (
    INTERNAL_MESSAGE,
    domain_error_response,
    error_response,
)
from clinvk.adapters.http.anthropic.schemas import AnthropicMessagesRequest
from clinvk.adapters.http.anthropic.stream import (
    PING,
    SSE_MEDIA_TYPE,
    MessageStreamWriter,
)
from clinvk.adapters.http.headers import BACKEND_HEADER
from clinvk.adapters.http.streaming import (
    ClientDisconnected,
    Emit,
    EventStreamResponse,
    until_disconnect,
)
from clinvk.domain import events as ev
from clinvk.domain.chat import TextStream
from clinvk.domain.errors import ClinvkError, InvalidRequest
from clinvk.domain.models import PromptRequest
from clinvk.domain.tool_runs import ToolRunService, ToolStep
from clinvk.domain.tools import ClientTool, ToolChoice, ToolOutcome, check_tools

#: Says that a tool result's run was gone and a fresh run answered the whole conversation.
REPLAY_HEADER = "X-Clinvk-Tool-Replay"

_encode = msgspec.json.Encoder().encode


def _is_client_tool(kind: str | None) -> bool:
    # Server tools (web_search_..., code_execution_...) have a versioned type; client
    # tools have none or `custom`.
    return kind in (None, "custom")


def client_tools(body: AnthropicMessagesRequest) -> list[ClientTool]:
    """The request's client tools (server tools are left to the CLI's own)."""
    tools, fields = [], []
    for i, tool in enumerate(body.tools or ()):
        if not _is_client_tool(tool.type):
            continue
        if tool.input_schema is None:
            raise InvalidRequest(f"tools.{i}.input_schema: Field required",
                                 field=f"tools.{i}.input_schema")
        tools.append(ClientTool(name=tool.name, description=tool.description or "",
                                parameters=tool.input_schema))
        fields.append(f"tools.{i}")
    check_tools(tools, fields, "input_schema")
    return tools


def tool_choice(body: AnthropicMessagesRequest, names: list[str]) -> ToolChoice:
    """`auto`, `none`, `required` (Anthropic's `any`) or a tool's name."""
    choice = body.tool_choice
    if choice is None or choice.type == "auto":
        return "auto"
    if choice.type == "none":
        return "none"
    if choice.type == "any":
        return "required"
    if choice.type == "tool" and choice.name in names:
        return choice.name
    raise InvalidRequest(
        "tool_choice: expected type 'auto', 'any', 'none', or 'tool' naming one of tools",
        field="tool_choice",
    )


def tool_results(body: AnthropicMessagesRequest) -> list[ToolOutcome]:
    """The `tool_result` blocks of the last message (the results the client sends now);
    each must answer a `tool_use` block of an assistant message of the conversation.
    Text blocks beside them come after the last result's text: a resumed CLI hears
    from the client only through its tool calls (see docs/tools.md)."""
    messages = body.messages
    if not messages or messages[-1].role != "user" or isinstance(messages[-1].content, str):
        return []
    known = {b.id for m in messages if m.role == "assistant" and not isinstance(m.content, str)
             for b in m.content if b.type == "tool_use" and b.id}
    last = len(messages) - 1
    results = []
    for j, block in enumerate(messages[-1].content):  # type: ignore[union-attr]
        if block.type != "tool_result":
            continue
        field = f"messages.{last}.content.{j}.tool_use_id"
        if not block.tool_use_id or block.tool_use_id not in known:
            raise InvalidRequest(
                f"{field}: {block.tool_use_id!r} answers no tool_use block of the "
                "conversation, so there is nothing to resume or replay", field=field,
            )
        text = content_text(block.content, f"messages.{last}.content.{j}.content")
        results.append(ToolOutcome(call_id=block.tool_use_id, output=text,
                                   is_error=bool(block.is_error)))
    blocks = messages[-1].content
    beside = [b.text for b in blocks if b.type == "text" and b.text]  # type: ignore[union-attr]
    if results and beside:
        results[-1] = msgspec.structs.replace(
            results[-1], output="\n\n".join([results[-1].output, *beside]))
    return results


def applies(body: AnthropicMessagesRequest, runs: ToolRunService | None) -> bool:
    """Whether this request goes through client tools: it offers client tools, or it
    carries results a parked run waits for."""
    if runs is None:
        return False
    if any(_is_client_tool(t.type) for t in body.tools or ()):
        return True
    last = body.messages[-1] if body.messages else None
    if last is None or isinstance(last.content, str):
        return False
    return any(b.type == "tool_result" and b.tool_use_id and runs.knows(b.tool_use_id)
               for b in last.content)


def _tool_blocks(step: ToolStep) -> list[dict[str, Any]]:
    return [{"type": "tool_use", "id": c.id, "name": c.name, "input": c.arguments}
            for c in step.calls]


def _sse(name: str, data: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + _encode({"type": name, **data}) + b"\n\n"


class ToolMessages:
    """The messages handler for requests with client tools."""

    def __init__(self, runs: ToolRunService, heartbeat_secs: float) -> None:
        self.runs = runs
        self.heartbeat_secs = heartbeat_secs

    def check(self, body: AnthropicMessagesRequest) -> None:
        """Refuse bad tools before anything runs."""
        tool_choice(body, [t.name for t in client_tools(body)])
        tool_results(body)

    async def _step(self, body: AnthropicMessagesRequest, prompt: PromptRequest,
                    on_event, on_replay) -> ToolStep:
        results = tool_results(body)
        if results:
            step = await self.runs.resume(results, field="messages", on_event=on_event)
            if step is not None:
                return step
            on_replay()
        tools = client_tools(body)
        builtin = body.clinvk.builtin_tools if body.clinvk else None
        return await self.runs.start(
            prompt, tools, choice=tool_choice(body, [t.name for t in tools]),
            builtin_tools=builtin, on_event=on_event)

    async def answer(self, request: Request, body: AnthropicMessagesRequest,
                     prompt: PromptRequest) -> Response:
        """Answer with text, or with the CLI's tool calls."""
        self.check(body)
        if body.stream:
            return self._stream(body, prompt)  # type: ignore[return-value]
        texts, pieces = TextStream(), []
        headers = {BACKEND_HEADER: prompt.backend}

        async def collect(event: ev.StreamEvent) -> None:
            text = texts.text(event)
            if text:
                pieces.append(text)

        def replayed() -> None:
            headers[REPLAY_HEADER] = "1"

        try:
            step = await until_disconnect(
                request, lambda: self._step(body, prompt, collect, replayed))
        except ClientDisconnected:
            return Response(status_code=499)
        if step.result is not None:
            result = step.result
            content: list[dict[str, Any]] = [{"type": "text", "text": result.output}]
            reason, tokens = translate.stop_reason(result.stop_reason), result.token_usage
        else:
            text = "".join(pieces)
            content = ([{"type": "text", "text": text}] if text else []) + _tool_blocks(step)
            reason, tokens = "tool_use", step.usage
        message = {
            "id": translate.message_id(), "type": "message", "role": "assistant",
            "content": content, "model": body.model, "stop_reason": reason,
            "stop_sequence": None, "usage": translate.usage(tokens),
        }
        return Response(_encode(message), headers=headers, media_type="application/json")

    def _stream(self, body: AnthropicMessagesRequest, prompt: PromptRequest
                ) -> EventStreamResponse:
        writer = MessageStreamWriter(id=translate.message_id(), model=body.model)

        async def produce(emit: Emit, response: EventStreamResponse) -> None:
            async def on_event(event: ev.StreamEvent) -> None:
                chunk = writer.event(event)
                if chunk:
                    await emit(chunk)

            def replayed() -> None:
                if not response.started:
                    response.headers[REPLAY_HEADER] = "1"

            try:
                step = await self._step(body, prompt, on_event, replayed)
            except ClinvkError as exc:
                if not response.started:
                    raise
                await emit(writer.error(exc))
                return
            except Exception:
                if not response.started:
                    raise
                await emit(writer.error(None))
                raise
            if step.result is not None:
                await emit(writer.close(step.result), last=True)
                return
            out = writer.open() + _sse("content_block_stop", {"index": 0})
            for i, block in enumerate(_tool_blocks(step), start=1):
                out += _sse("content_block_start",
                            {"index": i, "content_block": {**block, "input": {}}})
                out += _sse("content_block_delta", {"index": i, "delta": {
                    "type": "input_json_delta", "partial_json": _encode(block["input"]).decode()}})
                out += _sse("content_block_stop", {"index": i})
            out += _sse("message_delta", {
                "delta": {"stop_reason": "tool_use", "stop_sequence": None},
                "usage": translate.usage(step.usage)})
            out += _sse("message_stop", {})
            await emit(out, last=True)

        def early_error(exc: BaseException) -> Response:
            if isinstance(exc, ClinvkError):
                return domain_error_response(exc)
            return error_response(500, INTERNAL_MESSAGE)

        return EventStreamResponse(
            produce,
            media_type=SSE_MEDIA_TYPE,
            heartbeat=PING,
            heartbeat_secs=self.heartbeat_secs,
            on_early_error=early_error,
            headers={BACKEND_HEADER: prompt.backend},
            opening=writer.open,
        )
