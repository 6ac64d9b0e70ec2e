"""The OpenAI-compatible dialect (`/openai/v1`): models and chat completions."""

from __future__ import annotations

import time
import uuid

import msgspec
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from clinvk.adapters.http.errors import decode_body
from clinvk.adapters.http.headers import BACKEND_HEADER, SESSION_HEADER
from clinvk.adapters.http.openai import tools as tool_chat
from clinvk.adapters.http.openai.errors import (
    envelope,
    error_response,
    handle_clinvk,
    handle_http,
    handle_unexpected,
    internal_envelope,
    json_response,
)
from clinvk.adapters.http.openai.responses import ResponsesApi
from clinvk.adapters.http.openai.schemas import (
    FinishReason,
    OpenAIAnswer,
    OpenAIChatCompletion,
    OpenAIChatCompletionChunk,
    OpenAIChatRequest,
    OpenAIChoice,
    OpenAIChunkChoice,
    OpenAIDelta,
    OpenAIError,
    OpenAIErrorDetail,
    OpenAIModel,
    OpenAIModelList,
    OpenAIUsage,
    chat_request_decoder,
)
from clinvk.adapters.http.openai.translate import (
    finish_reason,
    to_prompt_request,
    usage,
)
from clinvk.adapters.http.streaming import (
    ClientDisconnected,
    Emit,
    EventStreamResponse,
    until_disconnect,
)
from clinvk.domain import events as ev
from clinvk.domain.chat import TextStream, answered_model, fallback_answer, route_model
from clinvk.domain.errors import ClinvkError
from clinvk.domain.models import PromptRequest, PromptResult
from clinvk.domain.services import Services

#: Who makes the models behind each backend (the `owned_by` of /models).
OWNERS = {"claude": "anthropic", "codex": "openai", "gemini": "google"}

_encode = msgspec.json.Encoder().encode


def _completion_id() -> str:
    return "chatcmpl-" + uuid.uuid4().hex


def _session_headers(session_id: str | None) -> dict[str, str] | None:
    return {SESSION_HEADER: session_id} if session_id else None


def _sse(value: object) -> bytes:
    return b"data: " + _encode(value) + b"\n\n"


class OpenAIApi:
    """Handlers of the OpenAI dialect, bound to the services."""

    def __init__(self, services: Services) -> None:
        self.services = services
        # /models needs a `created` time; the server's start is the honest one we have.
        self.created = int(time.time())

    # -- models -------------------------------------------------------------------------

    def model_list(self) -> list[OpenAIModel]:
        """Each backend, then each configured alias (owned by the backend it routes to)."""
        config = self.services.config
        names = self.services.runner.names()
        models = [
            OpenAIModel(id=name, created=self.created, owned_by=OWNERS.get(name, "clinvk"))
            for name in names
        ]
        for alias in config.model_aliases:
            backend = route_model(alias, config, names).backend
            models.append(
                OpenAIModel(id=alias, created=self.created, owned_by=OWNERS.get(backend, "clinvk"))
            )
        return models

    async def models(self, request: Request) -> Response:
        return json_response(OpenAIModelList(data=self.model_list()))

    async def model(self, request: Request) -> Response:
        model_id = request.path_params["model_id"]
        for model in self.model_list():
            if model.id == model_id:
                return json_response(model)
        body = OpenAIError(
            error=OpenAIErrorDetail(
                message=f"The model {model_id!r} does not exist",
                type="invalid_request_error",
                param="model",
                code="model_not_found",
            )
        )
        return json_response(body, 404)

    # -- chat completions -----------------------------------------------------------------

    async def chat(self, request: Request) -> Response:
        raw = await request.body()
        body: OpenAIChatRequest = decode_body(chat_request_decoder, raw)
        prompt = to_prompt_request(
            body, config=self.services.config, backends=self.services.runner.names()
        )
        runs = self.services.tool_runs
        if runs is not None and tool_chat.applies(body, runs):
            heartbeat = self.services.config.server.heartbeat_secs
            return await tool_chat.ToolChat(runs, heartbeat).answer(request, body, prompt)
        if body.stream:
            return self._stream(body, prompt)  # type: ignore[return-value]
        try:
            result = await until_disconnect(request, lambda: self.services.prompt.run(prompt))
        except ClientDisconnected:
            return Response(status_code=499)
        headers = {**(_session_headers(result.session_id) or {}), BACKEND_HEADER: result.backend}
        return json_response(self._completion(body, prompt, result), headers=headers)

    @staticmethod
    def _completion(
        body: OpenAIChatRequest, prompt: PromptRequest, result: PromptResult
    ) -> OpenAIChatCompletion:
        return OpenAIChatCompletion(
            id=_completion_id(),
            created=int(time.time()),
            model=answered_model(body.model, prompt, result),
            choices=[
                OpenAIChoice(
                    message=OpenAIAnswer(content=result.output),
                    finish_reason=finish_reason(result.stop_reason),
                )
            ],
            usage=usage(result.token_usage),
        )

    def _stream(self, body: OpenAIChatRequest, prompt: PromptRequest) -> EventStreamResponse:
        completion_id, created = _completion_id(), int(time.time())
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        answering = {"model": body.model}  # changes when a fallback answers

        def chunk(choices: list[OpenAIChunkChoice], final: OpenAIUsage | None = None) -> bytes:
            return _sse(
                OpenAIChatCompletionChunk(
                    id=completion_id,
                    created=created,
                    model=answering["model"],
                    choices=choices,
                    usage=final if include_usage else msgspec.UNSET,
                )
            )

        def piece(delta: OpenAIDelta, finish: FinishReason | None = None) -> bytes:
            return chunk([OpenAIChunkChoice(delta=delta, finish_reason=finish)])

        async def produce(emit: Emit, response: EventStreamResponse) -> None:
            texts = TextStream()

            # The stream starts with the first text (or the first heartbeat, or the end),
            # so everything the service refuses up front (unknown session, forbidden
            # workdir, missing CLI) is still an ordinary HTTP error, and a fallback before
            # then still shows in the headers.
            async def on_event(event: ev.StreamEvent) -> None:
                if isinstance(event, ev.Init) and event.session_id and not response.started:
                    response.headers[SESSION_HEADER] = event.session_id
                if isinstance(event, ev.Fallback):
                    backend, answering["model"] = fallback_answer(body.model, prompt, event)
                    answering["backend"] = backend
                    if not response.started:
                        response.headers[BACKEND_HEADER] = backend
                elif isinstance(event, ev.Init) and event.model and "backend" in answering:
                    if answering["backend"] != prompt.backend:  # as answered_model says
                        answering["model"] = event.model
                text = texts.text(event)
                if text:
                    await emit(piece(OpenAIDelta(content=text)))

            try:
                result = await self.services.prompt.run(prompt, on_event=on_event)
            except ClinvkError as exc:
                if not response.started:
                    raise
                await emit(_sse(envelope(exc)))
                return
            except Exception:
                if not response.started:
                    raise
                await emit(_sse(internal_envelope()))
                raise
            await emit(piece(OpenAIDelta(), finish_reason(result.stop_reason)))
            if include_usage:
                await emit(chunk([], usage(result.token_usage)))
            await emit(b"data: [DONE]\n\n")

        def early_error(exc: BaseException) -> Response:
            if isinstance(exc, ClinvkError):
                return error_response(exc)
            raise exc

        return EventStreamResponse(
            produce,
            media_type="text/event-stream",
            heartbeat=b": ping\n\n",
            heartbeat_secs=self.services.config.server.heartbeat_secs,
            on_early_error=early_error,
            headers={**(_session_headers(prompt.session_id) or {}),
                     BACKEND_HEADER: prompt.backend},
            opening=lambda: piece(OpenAIDelta(role="assistant", content="")),
        )


def openai_app(services: Services) -> Starlette:
    """The `/openai/v1` sub-application."""
    api = OpenAIApi(services)
    responses = ResponsesApi(services)
    routes = [
        Route("/models", api.models, methods=["GET"]),
        Route("/models/{model_id:path}", api.model, methods=["GET"]),
        Route("/chat/completions", api.chat, methods=["POST"]),
        Route("/responses", responses.create, methods=["POST"]),
        Route("/responses/{response_id}", responses.one, methods=["GET", "DELETE"]),
    ]
    return Starlette(
        routes=routes,
        exception_handlers={
            HTTPException: handle_http,
            ClinvkError: handle_clinvk,
            Exception: handle_unexpected,
        },
    )
