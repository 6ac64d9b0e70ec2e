"""The Responses API with the client's function tools: the answer's output is the CLI's
tool calls (`function_call` items, the response `completed`) while its run stays parked,
and the request carrying `function_call_output` items gets the run's continuation. The
same domain service as chat completions (domain/tool_runs.py); docs/tools.md has the flow.

Only `function` tools are offered through the bridge; hosted tools (`web_search`, ...),
free-form (`custom`) tools, `namespace` groups and `local_shell` are left out, as before.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from clinvk.adapters.http.headers import BACKEND_HEADER, SESSION_HEADER
from clinvk.adapters.http.openai.errors import (
    error_response,
    json_response,
)
from clinvk.adapters.http.openai.responses_schemas import (
    OpenAIResponse,
    OpenAIResponsesRequest,
    ResponsesFunctionCall,
    ResponsesOutputItem,
    ResponsesOutputText,
    ResponsesStreamEvent,
)
from clinvk.adapters.http.openai.responses_tool_items import (
    answer_text,
    client_tools,
    function_calls,
    function_entries,
    only_results_follow,
    tool_choice,
    tool_results,
)
from clinvk.adapters.http.openai.responses_translate import (
    METADATA_KEY,
    REPLAY_KEY,
    input_turns,
    message_id,
    new_response_id,
    now,
    output_message,
    response_object,
    stream_failure,
    to_prompt_request,
)
from clinvk.adapters.http.streaming import (
    ClientDisconnected,
    Emit,
    EventStreamResponse,
    until_disconnect,
)
from clinvk.domain import events as ev
from clinvk.domain.chat import TextStream, Turn
from clinvk.domain.errors import ClinvkError, InvalidRequest
from clinvk.domain.models import PromptRequest, Session
from clinvk.domain.services import Services
from clinvk.domain.tool_runs import ToolRunService, ToolStep
from clinvk.domain.tools import (
    ClientTool,
    ToolChoice,
    ToolOutcome,
)
from clinvk.ports import EventSink

#: Says that a tool result's run was gone and a fresh run answered the whole conversation.
REPLAY_HEADER = "X-Clinvk-Tool-Replay"

_encode = msgspec.json.Encoder().encode

#: (body, replay=...) -> the conversation a request continues (responses.py).
Continued = Callable[..., Awaitable[Any]]
#: (body, prompt, result, response id, message id, created_at) -> the final response.
Final = Callable[..., OpenAIResponse]
#: (session id, response, turns, fresh=..., answer=...) -> records it (responses.py).
Keep = Callable[..., Awaitable[None]]
#: response id -> (its session, the session's responses record), None when not stored.
Lookup = Callable[[str], Awaitable[tuple[Session, dict[str, Any]] | None]]


class _Keeping(msgspec.Struct, frozen=True, kw_only=True):
    """Where an answer is kept: its session (None: nowhere), whether the session begins
    with it, and the turns it answers."""

    session_id: str | None = None
    fresh: bool = True
    turns: list[Turn] = msgspec.field(default_factory=list)


class ToolResponses:
    """The `/responses` handler for requests with client tools."""

    def __init__(self, runs: ToolRunService, services: Services, *, continued: Continued,
                 final: Final, keep: Keep, lookup: Lookup) -> None:
        self.runs = runs
        self.services = services
        self.continued = continued
        self.final = final
        self.keep = keep
        self.lookup = lookup

    def _echoed(self, body: OpenAIResponsesRequest) -> list[dict[str, Any]]:
        return [entry for _, entry in function_entries(body)]

    def _prompt(self, body: OpenAIResponsesRequest, earlier=None) -> PromptRequest:
        # Ephemeral: this module keeps the conversation itself (also for tool_choice none,
        # which is a plain run).
        prompt = to_prompt_request(body, config=self.services.config,
                                   backends=self.services.runner.names(), session_id=None,
                                   earlier=earlier)
        return msgspec.structs.replace(prompt, ephemeral=True)

    async def _fresh_prompt(self, body: OpenAIResponsesRequest) -> tuple[PromptRequest,
                                                                        list[Turn]]:
        """The prompt of a fresh run, and the earlier turns it replays: the conversation
        `previous_response_id` names (a parked run keeps no session to resume)."""
        if not body.previous_response_id:
            return self._prompt(body), []
        try:
            continued = await self.continued(body, replay=True)
        except InvalidRequest as exc:
            if exc.field != "previous_response_id":
                raise
            raise InvalidRequest(
                exc.message + " (a response created with store: false is not kept; send "
                "the whole input instead)", field="previous_response_id") from None
        prompt = self._prompt(body, continued.earlier)
        if continued.workdir and prompt.workdir is None:
            prompt = msgspec.structs.replace(prompt, workdir=continued.workdir)
        return prompt, continued.earlier

    async def _keeping(self, body: OpenAIResponsesRequest, prompt: PromptRequest,
                       earlier: list[Turn] | None) -> _Keeping:
        """Where the answer will be kept: the conversation's session when the request
        continues its latest response, else a new session (its history begins with the
        replayed turns); nowhere with `store: false`, or when a resumed run's earlier turns
        are not known (`earlier` None)."""
        if body.store is False:
            return _Keeping()
        turns = input_turns(body)
        previous = body.previous_response_id
        found = await self.lookup(previous) if previous else None
        if found is not None:
            session, record = found
            if record.get(REPLAY_KEY) and record.get("latest") == previous:
                return _Keeping(session_id=session.id, fresh=False, turns=turns)
        if earlier is None:
            if previous:
                try:
                    earlier = (await self.continued(body, replay=True)).earlier
                except InvalidRequest:
                    return _Keeping()  # the run goes on; its conversation is not known
            else:
                earlier = []
        return _Keeping(session_id=await self._open(prompt), turns=[*earlier, *turns])

    async def _open(self, prompt: PromptRequest) -> str:
        """A new session holding a conversation of runs with client tools (no CLI session:
        continuing it replays it)."""
        now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        session = Session(
            id=uuid.uuid4().hex, backend=prompt.backend, created_at=now, last_used=now,
            working_dir=self.services.prompt.workdir(prompt.workdir), model=prompt.model,
            initial_prompt=prompt.prompt[:1000],
            title=prompt.prompt.strip().splitlines()[0][:80] if prompt.prompt.strip() else "",
            tags=list(self.services.config.session.default_tags),
            metadata={**prompt.metadata, METADATA_KEY: {REPLAY_KEY: True}},
        )
        await self.services.store.create(session)
        return session.id

    async def _earlier_calls(self, body: OpenAIResponsesRequest) -> frozenset[str]:
        """The call ids of the stored response `previous_response_id` names."""
        found = await self.lookup(body.previous_response_id) if body.previous_response_id \
            else None
        if found is None:
            return frozenset()
        stored = found[1].get("stored", {}).get(body.previous_response_id, {})
        return frozenset(item.get("call_id") for item in stored.get("output", [])
                         if isinstance(item, dict) and item.get("type") == "function_call")

    def check(self, body: OpenAIResponsesRequest, earlier_calls: frozenset[str] = frozenset()
              ) -> tuple[list[ClientTool], ToolChoice, list[ToolOutcome]]:
        """Refuse bad tools before anything runs (streams too: their errors would otherwise
        come after the 200)."""
        if body.clinvk and body.clinvk.session_id:
            raise InvalidRequest(
                "clinvk.session_id cannot be combined with client tools: send the whole "
                "input, or previous_response_id", field="clinvk.session_id")
        tools = client_tools(body)
        choice = tool_choice(body, [t.name for t in tools])
        return tools, choice, tool_results(body, self.runs, earlier_calls)

    async def _step(self, body: OpenAIResponsesRequest, tools: list[ClientTool],
                    choice: ToolChoice, results: list[ToolOutcome],
                    fresh: PromptRequest | None, on_event: EventSink,
                    on_replay: Callable[[], None]) -> tuple[ToolStep, PromptRequest]:
        base = fresh or self._prompt(body)
        if results and only_results_follow(body):
            step = await self.runs.resume(results, field="input", on_event=on_event)
            if step is not None:
                return step, base
        if results:
            on_replay()
        prompt = fresh or (await self._fresh_prompt(body))[0]
        builtin = body.clinvk.builtin_tools if body.clinvk else None
        step = await self.runs.start(prompt, tools, choice=choice, builtin_tools=builtin,
                                     on_event=on_event)
        return step, prompt

    def _resumes(self, body: OpenAIResponsesRequest, results: list[ToolOutcome]) -> bool:
        return bool(results) and only_results_follow(body) and any(
            self.runs.knows(r.call_id) for r in results)

    async def answer(self, request: Request, body: OpenAIResponsesRequest) -> Response:
        """Answer with text, or with the CLI's function calls."""
        tools, choice, results = self.check(body, await self._earlier_calls(body))
        # A fresh run's prompt is built (and refused) up front; a resumed run needs none.
        fresh, earlier = None, None
        if not self._resumes(body, results):
            fresh, earlier = await self._fresh_prompt(body)
        keeping = await self._keeping(body, fresh or self._prompt(body), earlier)
        response_id = new_response_id(keeping.session_id)
        if body.stream:
            return self._stream(body, tools, choice, results, fresh,  # type: ignore[return-value]
                                keeping, response_id)
        texts, pieces = TextStream(), []
        headers: dict[str, str] = {}

        async def collect(event: ev.StreamEvent) -> None:
            text = texts.text(event)
            if text:
                pieces.append(text)

        def replayed() -> None:
            headers[REPLAY_HEADER] = "1"

        try:
            step, prompt = await until_disconnect(request, lambda: self._step(
                body, tools, choice, results, fresh, collect, replayed))
        except ClientDisconnected:
            return Response(status_code=499)
        headers[BACKEND_HEADER] = prompt.backend
        text = "".join(pieces) if step.result is None else ""
        response = self._response(body, prompt, step, response_id, now(), text, keeping)
        await self._record(keeping, response)
        if keeping.session_id:
            headers[SESSION_HEADER] = keeping.session_id
        return json_response(response, headers=headers)

    async def _record(self, keeping: _Keeping, response: OpenAIResponse) -> None:
        await self.keep(keeping.session_id, response, keeping.turns, fresh=keeping.fresh,
                        answer=answer_text(response))

    def _response(self, body: OpenAIResponsesRequest, prompt: PromptRequest, step: ToolStep,
                  response_id: str, created_at: int, text: str,
                  keeping: _Keeping) -> OpenAIResponse:
        if step.result is not None:
            response = self.final(body, prompt, step.result, response_id,
                                  message_id(response_id), created_at)
            if text:  # the streamed text, as the plain stream's final object has it
                response.output[0].content = [ResponsesOutputText(text=text)]  # type: ignore[union-attr]
        else:
            output: list[ResponsesOutputItem] = []
            if text:
                output.append(output_message(message_id(response_id), text))
            output += function_calls(response_id, step.calls)
            response = response_object(body, response_id=response_id, created_at=created_at,
                                       model=body.model, status="completed", output=output,
                                       tokens=step.usage)
        response.tools = self._echoed(body)
        response.tool_choice = body.tool_choice or "auto"
        response.store = keeping.session_id is not None
        return response

    def _stream(self, body: OpenAIResponsesRequest, tools: list[ClientTool], choice: ToolChoice,
                results: list[ToolOutcome], fresh: PromptRequest | None, keeping: _Keeping,
                response_id: str) -> EventStreamResponse:
        created_at = now()
        msg_id = message_id(response_id)
        seq = [0]
        opened: list[str] = []  # the text streamed into the open message item

        def frame(kind: str, **fields: Any) -> bytes:
            event = ResponsesStreamEvent(type=kind, sequence_number=seq[0], **fields)
            seq[0] += 1
            return b"event: " + kind.encode() + b"\ndata: " + _encode(event) + b"\n\n"

        def pending(status: Any = "in_progress", **fields: Any) -> OpenAIResponse:
            response = response_object(body, response_id=response_id, created_at=created_at,
                                       model=body.model, status=status, output=[], **fields)
            response.tools = self._echoed(body)
            response.tool_choice = body.tool_choice or "auto"
            response.store = keeping.session_id is not None
            return response

        def opening() -> bytes:
            return (frame("response.created", response=pending())
                    + frame("response.in_progress", response=pending()))

        def open_message() -> bytes:
            if opened:
                return b""
            opened.append("")
            return (frame("response.output_item.added", output_index=0,
                          item=output_message(msg_id, "", done=False))
                    + frame("response.content_part.added", item_id=msg_id, output_index=0,
                            content_index=0, part=ResponsesOutputText(text="")))

        def close_message(item: ResponsesOutputItem) -> bytes:
            text = "".join(opened)
            return (frame("response.output_text.done", item_id=msg_id, output_index=0,
                          content_index=0, text=text, logprobs=[])
                    + frame("response.content_part.done", item_id=msg_id, output_index=0,
                            content_index=0, part=ResponsesOutputText(text=text))
                    + frame("response.output_item.done", output_index=0, item=item))

        def call_frames(final: OpenAIResponse) -> bytes:
            out = b""
            for index, item in enumerate(final.output):
                if not isinstance(item, ResponsesFunctionCall):
                    continue
                started = msgspec.structs.replace(item, arguments="", status="in_progress")
                out += frame("response.output_item.added", output_index=index, item=started)
                out += frame("response.function_call_arguments.delta", item_id=item.id,
                             output_index=index, delta=item.arguments)
                out += frame("response.function_call_arguments.done", item_id=item.id,
                             output_index=index, arguments=item.arguments, name=item.name)
                out += frame("response.output_item.done", output_index=index, item=item)
            return out

        async def produce(emit: Emit, response: EventStreamResponse) -> None:
            texts = TextStream()

            async def begin() -> None:
                # The stream starts with the first text, heartbeat (once the CLI runs) or
                # the end, so what is refused before the CLI starts is an HTTP error.
                if not response.started:
                    response.opening = opening
                    await emit(b"")

            async def on_event(event: ev.StreamEvent) -> None:
                if isinstance(event, ev.Init):
                    response.opening = opening  # heartbeats may open the stream now
                text = texts.text(event)
                if text:
                    await begin()
                    out = open_message()
                    opened.append(text)
                    await emit(out + frame("response.output_text.delta", item_id=msg_id,
                                           output_index=0, content_index=0, delta=text,
                                           logprobs=[]))

            def replayed() -> None:
                if not response.started:
                    response.headers[REPLAY_HEADER] = "1"

            if fresh is None:  # a parked run goes on: heartbeats may open the stream now
                response.opening = opening
            try:
                step, prompt = await self._step(body, tools, choice, results, fresh,
                                                on_event, replayed)
            except Exception as exc:
                if not response.started:
                    raise
                await emit(frame("response.failed",
                                 response=pending("failed", error=stream_failure(exc))))
                if not isinstance(exc, ClinvkError):
                    raise
                return
            if not response.started:
                response.headers[BACKEND_HEADER] = prompt.backend
            await begin()
            streamed = "".join(opened)
            final = self._response(body, prompt, step, response_id, created_at, streamed,
                                   keeping)
            await self._record(keeping, final)
            out = b""
            if step.result is not None:
                out += open_message()
                opened[:] = [streamed or step.result.output]
                out += close_message(final.output[0])
            elif opened:
                out += close_message(final.output[0])
            out += call_frames(final)
            kind = ("response.incomplete" if final.status == "incomplete"
                    else "response.completed")
            await emit(out + frame(kind, response=final))

        def early_error(exc: BaseException) -> Response:
            if isinstance(exc, ClinvkError):
                return error_response(exc)
            raise exc

        headers = {BACKEND_HEADER: fresh.backend} if fresh is not None else {}
        if keeping.session_id:
            headers[SESSION_HEADER] = keeping.session_id
        return EventStreamResponse(
            produce,
            media_type="text/event-stream",
            heartbeat=b": ping\n\n",
            heartbeat_secs=self.services.config.server.heartbeat_secs,
            on_early_error=early_error,
            headers=headers,
        )

