"""OpenAI's Responses API (`/openai/v1/responses`): create (plain or streamed), get, delete.

A translator beside chat completions: the same prompt service, model routing and error
envelope. `previous_response_id` naming the latest response of a conversation continues the clinvk
session it ran in (the CLI resumes its own session, and only the new input is sent); naming
an earlier one branches: a new session whose prompt replays the conversation up to that
response, from the turns clinvk keeps beside the stored responses in the session's metadata
(see responses_translate.py).
"""

from __future__ import annotations

from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from clinvk.adapters.http.errors import decode_body
from clinvk.adapters.http.headers import BACKEND_HEADER, SESSION_HEADER
from clinvk.adapters.http.openai import responses_tool_items, responses_tools
from clinvk.adapters.http.openai.errors import (
    error_response,
    error_type,
    json_response,
)
from clinvk.adapters.http.openai.responses_schemas import (
    OpenAIResponse,
    OpenAIResponseDeleted,
    OpenAIResponsesRequest,
    ResponsesOutputMessage,
    ResponsesOutputText,
    ResponsesStreamEvent,
    responses_request_decoder,
)
from clinvk.adapters.http.openai.responses_translate import (
    METADATA_KEY,
    REPLAY_KEY,
    conversation_until,
    final_status,
    history_entry,
    input_turns,
    message_id,
    new_response_id,
    now,
    output_message,
    response_object,
    response_of,
    session_of,
    stream_failure,
    to_prompt_request,
)
from clinvk.adapters.http.openai.schemas import OpenAIError, OpenAIErrorDetail
from clinvk.adapters.http.streaming import (
    ClientDisconnected,
    Emit,
    EventStreamResponse,
    until_disconnect,
)
from clinvk.domain import events as ev
from clinvk.domain.chat import TextStream, Turn, answered_model, fallback_answer
from clinvk.domain.errors import ClinvkError, InvalidRequest, SessionNotFound
from clinvk.domain.models import PromptRequest, PromptResult, Session
from clinvk.domain.services import Services

_encode = msgspec.json.Encoder().encode


def _not_found(response_id: str, param: str | None = None) -> Response:
    body = OpenAIError(
        error=OpenAIErrorDetail(
            message=f"Response with id {response_id!r} not found.",
            type=error_type(404) if param is None else "invalid_request_error",
            param=param,
            code="not_found" if param is None else "previous_response_not_found",
        )
    )
    return json_response(body, 404)


class _UnknownResponse(Exception):
    """A response id that names no stored response."""


class _Continuation(msgspec.Struct, frozen=True, kw_only=True):
    """What a request continues: a session to resume, or a conversation to replay."""

    session_id: str | None = None
    #: Turns replayed before the input (a branch from an earlier response).
    earlier: list[Turn] = msgspec.field(default_factory=list)
    #: The working directory of the conversation a branch comes from.
    workdir: str | None = None


def _record(session: Session) -> dict[str, Any]:
    record = session.metadata.get(METADATA_KEY)
    return record if isinstance(record, dict) else {}


def _stored(session: Session) -> dict[str, Any]:
    stored = _record(session).get("stored")
    return stored if isinstance(stored, dict) else {}


class ResponsesApi:
    """Handlers of `/responses`, bound to the services."""

    def __init__(self, services: Services) -> None:
        self.services = services

    # -- lookups ------------------------------------------------------------------------

    async def _session(self, response_id: str) -> Session:
        session_id = session_of(response_id)
        if session_id is None:
            raise _UnknownResponse
        try:
            return await self.services.store.get(session_id)
        except SessionNotFound:
            raise _UnknownResponse from None

    async def _lookup(self, response_id: str) -> tuple[Session, dict[str, Any]] | None:
        """The session a stored response is in, and the session's responses record."""
        try:
            session = await self._session(response_id)
        except _UnknownResponse:
            return None
        return (session, _record(session)) if response_id in _stored(session) else None

    async def _continued(self, body: OpenAIResponsesRequest, *,
                         replay: bool = False) -> _Continuation:
        """What a request continues: previous_response_id's conversation (its session when
        that response is the latest, else a replay of it), or clinvk.session_id. `replay`:
        always a replay (a run with client tools keeps no session to resume)."""
        option = body.clinvk.session_id if body.clinvk else None
        previous = body.previous_response_id
        if not previous:
            return _Continuation(session_id=option)
        if option:
            raise InvalidRequest(
                "send either previous_response_id or clinvk.session_id, not both",
                field="previous_response_id",
            )
        try:
            session = await self._session(previous)
        except _UnknownResponse:
            raise InvalidRequest(
                f"Previous response with id {previous!r} not found.",
                field="previous_response_id",
            ) from None
        if previous not in _stored(session):  # never stored, or deleted
            raise InvalidRequest(
                f"Previous response with id {previous!r} not found.",
                field="previous_response_id",
            )
        record = _record(session)
        # A conversation of runs with client tools has no CLI session to resume: replayed.
        if record.get("latest") == previous and not replay and not record.get(REPLAY_KEY):
            return _Continuation(session_id=session.id)
        # An earlier response: the CLI's session holds later turns too and cannot branch,
        # so a new session replays the conversation up to that response.
        earlier = conversation_until(record.get("history"), previous)
        if earlier is None:
            why = ("a request with client tools replays its conversation" if replay
                   else "it is not the latest of its conversation")
            raise InvalidRequest(
                f"response {previous!r} cannot be continued here ({why}), and clinvk did "
                "not keep the turns before it",
                field="previous_response_id",
            )
        return _Continuation(earlier=earlier, workdir=session.working_dir)

    async def _dereferenced(self, body: OpenAIResponsesRequest) -> OpenAIResponsesRequest:
        """`body` with each `item_reference` input item replaced by the stored output item
        it names; one clinvk did not store is a 400."""
        if isinstance(body.input, str) or not any(
            isinstance(raw, dict) and raw.get("type") == "item_reference" for raw in body.input
        ):
            return body
        items: list[Any] = []
        for i, raw in enumerate(body.input):
            if isinstance(raw, dict) and raw.get("type") == "item_reference":
                raw = await self._stored_item(raw.get("id"), f"input[{i}]")
            items.append(raw)
        return msgspec.structs.replace(body, input=items)

    async def _stored_item(self, item_id: Any, where: str) -> dict[str, Any]:
        """The stored output item `item_id` names (its response is in the id)."""
        output: Any = []
        if isinstance(item_id, str):
            response_id = response_of(item_id)
            try:
                stored = _stored(await self._session(response_id)).get(response_id)
            except _UnknownResponse:
                stored = None
            output = stored.get("output", []) if isinstance(stored, dict) else []
        for item in output if isinstance(output, list) else []:
            if isinstance(item, dict) and item.get("id") == item_id:
                return item
        raise InvalidRequest(
            f"{where} references item {item_id!r}, which clinvk has not stored (its response "
            "was created with store: false, deleted, or not by clinvk); send the item itself",
            field=f"{where}.id",
        )

    async def _keep(self, session_id: str | None, response: OpenAIResponse,
                    turns: list[Turn], *, fresh: bool, answer: str | None = None) -> None:
        """Record the response as its session's latest, and its turns in the session's
        history (begun by a `fresh` session's first turn); store it unless `store: false`.
        `answer`: the answer's text for the history (default: the output message's)."""
        if session_id is None:
            return
        value = msgspec.to_builtins(response) if response.store else None
        if answer is None:
            first = response.output[0] if response.output else None
            content = first.content if isinstance(first, ResponsesOutputMessage) else []
            answer = content[0].text if content else ""
        entry = history_entry(response.id, turns, answer)

        def change(current: Session) -> Session:
            stored = dict(_stored(current))
            if value is not None:
                stored[response.id] = value
            record: dict[str, Any] = {"latest": response.id, "stored": stored}
            if _record(current).get(REPLAY_KEY):
                record[REPLAY_KEY] = True
            history = _record(current).get("history")
            if fresh:
                record["history"] = [entry]
            elif isinstance(history, list):
                record["history"] = [*history, entry]
            # else: a session whose earlier turns were not kept (older, or run through
            # another API) gets no history, as a partial one would replay a wrong past.
            return msgspec.structs.replace(
                current, metadata={**current.metadata, METADATA_KEY: record}
            )

        try:
            await self.services.store.update(session_id, change)
        except SessionNotFound:
            pass  # deleted meanwhile: nothing to keep it in

    # -- handlers -----------------------------------------------------------------------

    async def create(self, request: Request) -> Response:
        raw = await request.body()
        body: OpenAIResponsesRequest = await self._dereferenced(
            decode_body(responses_request_decoder, raw))
        runs = self.services.tool_runs
        if runs is not None and responses_tool_items.applies(body, runs):
            return await responses_tools.ToolResponses(
                runs, self.services, continued=self._continued, final=self._final,
                keep=self._keep, lookup=self._lookup).answer(request, body)
        continued = await self._continued(body)
        prompt = to_prompt_request(
            body,
            config=self.services.config,
            backends=self.services.runner.names(),
            session_id=continued.session_id,
            earlier=continued.earlier,
        )
        if continued.workdir and prompt.workdir is None:
            prompt = msgspec.structs.replace(prompt, workdir=continued.workdir)
        turns = [*continued.earlier, *input_turns(body)]
        fresh = continued.session_id is None
        if body.stream:
            return self._stream(body, prompt, turns, fresh)  # type: ignore[return-value]
        try:
            result = await until_disconnect(request, lambda: self.services.prompt.run(prompt))
        except ClientDisconnected:
            return Response(status_code=499)
        response_id = new_response_id(result.session_id)
        response = self._final(body, prompt, result, response_id, message_id(response_id),
                               now())
        await self._keep(result.session_id, response, turns, fresh=fresh)
        headers = {BACKEND_HEADER: result.backend}
        if result.session_id:
            headers[SESSION_HEADER] = result.session_id
        return json_response(response, headers=headers)

    @staticmethod
    def _final(
        body: OpenAIResponsesRequest,
        prompt: PromptRequest,
        result: PromptResult,
        response_id: str,
        msg_id: str,
        created_at: int,
    ) -> OpenAIResponse:
        status, incomplete = final_status(result.stop_reason)
        message = output_message(msg_id, result.output)
        if status == "incomplete":
            message.status = "incomplete"
        return response_object(
            body,
            response_id=response_id,
            created_at=created_at,
            model=answered_model(body.model, prompt, result),
            status=status,
            output=[message],
            tokens=result.token_usage,
            incomplete=incomplete,
        )

    def _stream(self, body: OpenAIResponsesRequest, prompt: PromptRequest,
                turns: list[Turn], fresh: bool) -> EventStreamResponse:
        created_at, msg_id = now(), ""
        state: dict[str, Any] = {"seq": 0, "id": None, "text": [], "model": body.model,
                                 "session": prompt.session_id, "backend": prompt.backend}

        def frame(kind: str, **fields: Any) -> bytes:
            event = ResponsesStreamEvent(type=kind, sequence_number=state["seq"], **fields)
            state["seq"] += 1
            return b"event: " + kind.encode() + b"\ndata: " + _encode(event) + b"\n\n"

        def pending(status: Any = "in_progress", **fields: Any) -> OpenAIResponse:
            return response_object(
                body, response_id=state["id"], created_at=created_at, model=state["model"],
                status=status, output=[], **fields,
            )

        def opening() -> bytes:
            """The frames before the first text; the response id carries the session."""
            nonlocal msg_id
            state["id"] = new_response_id(state["session"])
            msg_id = message_id(state["id"])
            return (
                frame("response.created", response=pending())
                + frame("response.in_progress", response=pending())
                + frame("response.output_item.added", output_index=0,
                        item=output_message(msg_id, "", done=False))
                + frame("response.content_part.added", item_id=msg_id, output_index=0,
                        content_index=0, part=ResponsesOutputText(text=""))
            )

        async def produce(emit: Emit, response: EventStreamResponse) -> None:
            texts = TextStream()

            async def begin() -> None:
                # The stream starts with the first text (or heartbeat, once the CLI runs),
                # so everything refused up front, and a run that fails before its first
                # text, is still an ordinary HTTP error; a fallback before it shows in the
                # headers and the model.
                if not response.started:
                    response.opening = opening
                    await emit(b"")

            async def on_event(event: ev.StreamEvent) -> None:
                if isinstance(event, ev.Init):
                    state["session"] = event.session_id or state["session"]
                    if state["session"] and not response.started:
                        response.headers[SESSION_HEADER] = state["session"]
                    if event.model and state["backend"] != prompt.backend:
                        state["model"] = event.model  # as answered_model says
                    response.opening = opening  # heartbeats may open the stream now
                if isinstance(event, ev.Fallback):
                    state["backend"], state["model"] = fallback_answer(body.model, prompt, event)
                    if not response.started:
                        response.headers[BACKEND_HEADER] = state["backend"]
                text = texts.text(event)
                if text:
                    await begin()
                    state["text"].append(text)
                    await emit(frame("response.output_text.delta", item_id=msg_id,
                                     output_index=0, content_index=0, delta=text, logprobs=[]))

            try:
                result = await self.services.prompt.run(prompt, on_event=on_event)
            except Exception as exc:
                if not response.started:
                    raise
                await emit(frame("response.failed",
                                 response=pending("failed", error=stream_failure(exc))))
                if not isinstance(exc, ClinvkError):
                    raise
                return
            state["session"] = result.session_id or state["session"]
            if state["session"] and not response.started:
                response.headers[SESSION_HEADER] = state["session"]
            await begin()
            final = self._final(body, prompt, result, state["id"], msg_id, created_at)
            # The streamed text is what the client saw; the final object agrees with it.
            streamed = "".join(state["text"])
            text = streamed or result.output
            final.output[0].content = [ResponsesOutputText(text=text)]
            await self._keep(result.session_id, final, turns, fresh=fresh)
            await emit(frame("response.output_text.done", item_id=msg_id, output_index=0,
                             content_index=0, text=text, logprobs=[]))
            await emit(frame("response.content_part.done", item_id=msg_id, output_index=0,
                             content_index=0, part=ResponsesOutputText(text=text)))
            await emit(frame("response.output_item.done", output_index=0,
                             item=final.output[0]))
            kind = "response.completed" if final.status == "completed" else "response.incomplete"
            await emit(frame(kind, response=final))

        def early_error(exc: BaseException) -> Response:
            if isinstance(exc, ClinvkError):
                return error_response(exc)
            raise exc

        headers = {BACKEND_HEADER: prompt.backend}
        if prompt.session_id:
            headers[SESSION_HEADER] = prompt.session_id
        return EventStreamResponse(
            produce,
            media_type="text/event-stream",
            heartbeat=b": ping\n\n",
            heartbeat_secs=self.services.config.server.heartbeat_secs,
            on_early_error=early_error,
            headers=headers,
        )

    async def one(self, request: Request) -> Response:
        """GET or DELETE one stored response."""
        if request.method == "DELETE":
            return await self.delete(request)
        return await self.get(request)

    async def get(self, request: Request) -> Response:
        response_id = request.path_params["response_id"]
        try:
            session = await self._session(response_id)
        except _UnknownResponse:
            return _not_found(response_id)
        value = _stored(session).get(response_id)
        if value is None:
            return _not_found(response_id)
        return json_response(msgspec.convert(value, OpenAIResponse))

    async def delete(self, request: Request) -> Response:
        response_id = request.path_params["response_id"]
        try:
            session = await self._session(response_id)
        except _UnknownResponse:
            return _not_found(response_id)
        if response_id not in _stored(session):
            return _not_found(response_id)

        def change(current: Session) -> Session:
            record = dict(_record(current))
            record["stored"] = {k: v for k, v in _stored(current).items() if k != response_id}
            return msgspec.structs.replace(
                current, metadata={**current.metadata, METADATA_KEY: record}
            )

        try:
            await self.services.store.update(session.id, change)
        except SessionNotFound:
            return _not_found(response_id)
        return json_response(OpenAIResponseDeleted(id=response_id))
