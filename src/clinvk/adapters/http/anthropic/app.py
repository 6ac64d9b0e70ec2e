"""The Anthropic-compatible dialect (`/anthropic/v1`): messages and models, faithful
enough that the official `anthropic` SDK works unchanged.

Every route answers with and without a second `/v1`: the SDK appends `/v1/messages` to
its base URL, so `base_url=".../anthropic/v1"` (as the seed's example has it) and
`base_url=".../anthropic"` both work.
"""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from clinvk.adapters.http.anthropic import tools as tool_messages
from clinvk.adapters.http.anthropic import translate
from clinvk.adapters.http.anthropic.errors import (
    INTERNAL_MESSAGE,
    domain_error_response,
    error_response,
    handle_clinvk,
    handle_http,
    handle_unexpected,
)
from clinvk.adapters.http.anthropic.schemas import (
    AnthropicModel,
    AnthropicModelList,
    AnthropicTokenCount,
    decode_count_tokens_request,
    decode_messages_request,
)
from clinvk.adapters.http.anthropic.stream import (
    PING,
    SSE_MEDIA_TYPE,
    MessageStreamWriter,
)
from clinvk.adapters.http.headers import BACKEND_HEADER, SESSION_HEADER
from clinvk.adapters.http.streaming import (
    ClientDisconnected,
    Emit,
    EventStreamResponse,
    until_disconnect,
)
from clinvk.adapters.logging import get_logger
from clinvk.domain import events as ev
from clinvk.domain.chat import answered_model, fallback_answer, route_model
from clinvk.domain.errors import ClinvkError, InvalidRequest
from clinvk.domain.models import PromptRequest
from clinvk.domain.services import Services

_encode = msgspec.json.Encoder().encode
_log = get_logger(__name__)

_LABELS = {"claude": "Claude Code", "codex": "Codex", "gemini": "Gemini"}


def _json(value, headers: dict[str, str] | None = None) -> Response:
    return Response(_encode(value), headers=headers, media_type="application/json")


class AnthropicApi:
    """Handlers of the Anthropic dialect, bound to the services."""

    def __init__(self, services: Services) -> None:
        self.services = services
        now = datetime.now(UTC).isoformat(timespec="seconds")
        self.started_at = now.replace("+00:00", "Z")

    # -- messages ---------------------------------------------------------------------

    async def messages(self, request: Request) -> Response:
        body = decode_messages_request(await request.body())
        prompt = translate.to_prompt_request(
            body, self.services.config, self.services.runner.names()
        )
        runs = self.services.tool_runs
        if runs is not None and tool_messages.applies(body, runs):
            heartbeat = self.services.config.server.heartbeat_secs
            return await tool_messages.ToolMessages(runs, heartbeat).answer(request, body, prompt)
        if body.stream:
            return self._stream(prompt, model=body.model)  # type: ignore[return-value]
        try:
            result = await until_disconnect(request, lambda: self.services.prompt.run(prompt))
        except ClientDisconnected:
            return Response(status_code=499)
        answer = translate.message(
            id=translate.message_id(),
            model=answered_model(body.model, prompt, result),
            text=result.output,
            reason=result.stop_reason,
            tokens=result.token_usage,
        )
        headers = {BACKEND_HEADER: result.backend}
        if result.session_id:
            headers[SESSION_HEADER] = result.session_id
        return _json(answer, headers)

    def _stream(self, prompt: PromptRequest, *, model: str) -> EventStreamResponse:
        writer = MessageStreamWriter(id=translate.message_id(), model=model)

        answering: dict[str, str] = {}  # the backend, once a fallback answers

        async def produce(emit: Emit, response: EventStreamResponse) -> None:
            async def on_event(event: ev.StreamEvent) -> None:
                if isinstance(event, ev.Init) and event.session_id and not response.started:
                    response.headers[SESSION_HEADER] = event.session_id
                if isinstance(event, ev.Fallback) and not writer.opened:
                    backend, writer.model = fallback_answer(model, prompt, event)
                    answering["backend"] = backend
                    if not response.started:
                        response.headers[BACKEND_HEADER] = backend
                elif isinstance(event, ev.Init) and event.model and not writer.opened:
                    if answering.get("backend", prompt.backend) != prompt.backend:
                        writer.model = event.model  # as answered_model says
                chunk = writer.event(event)
                if chunk:
                    await emit(chunk)

            try:
                result = await self.services.prompt.run(prompt, on_event=on_event)
            except ClinvkError as exc:
                if not response.started:
                    raise  # still an ordinary error response, with its status
                await emit(writer.error(exc))
                return
            except Exception:
                if not response.started:
                    raise
                await emit(writer.error(None))
                raise  # the server logs it; the client already has its error event
            await emit(writer.close(result))

        def early_error(exc: BaseException) -> Response:
            if isinstance(exc, ClinvkError):
                return domain_error_response(exc)
            _log.error("anthropic stream failed before it started", exc_info=exc)
            return error_response(500, INTERNAL_MESSAGE)

        return EventStreamResponse(
            produce,
            media_type=SSE_MEDIA_TYPE,
            heartbeat=PING,
            heartbeat_secs=self.services.config.server.heartbeat_secs,
            on_early_error=early_error,
            headers={BACKEND_HEADER: prompt.backend,
                     **({SESSION_HEADER: prompt.session_id} if prompt.session_id else {})},
            opening=writer.open,
        )

    async def count_tokens(self, request: Request) -> Response:
        body = decode_count_tokens_request(await request.body())
        tokens = translate.estimate_input_tokens(body, self.services.config)
        return _json(AnthropicTokenCount(input_tokens=tokens))

    # -- models -----------------------------------------------------------------------

    def _model(self, id: str, display_name: str) -> AnthropicModel:
        return AnthropicModel(id=id, display_name=display_name, created_at=self.started_at)

    def _models(self) -> list[AnthropicModel]:
        models = []
        for b in self.services.backends():
            label = f"{_LABELS.get(b.name, b.name)} CLI"
            models.append(self._model(b.name, f"{label} ({b.model})" if b.model else label))
        for alias, target in self.services.config.model_aliases.items():
            models.append(self._model(alias, f"{alias} ({target})"))
        return models

    async def list_models(self, request: Request) -> Response:
        params = request.query_params
        limit = params.get("limit", "20")
        # isascii(): "²".isdigit() is True, but int("²") fails.
        if not (limit.isascii() and limit.isdigit() and 1 <= int(limit) <= 1000):
            raise InvalidRequest("limit: must be an integer from 1 to 1000", field="limit")
        models, size = self._models(), int(limit)
        ids = [m.id for m in models]
        if params.get("after_id") in ids:
            models = models[ids.index(params["after_id"]) + 1 :]
        elif params.get("before_id") in ids:
            models = models[: ids.index(params["before_id"])][-size:]
        page = models[:size]
        return _json(
            AnthropicModelList(
                data=page,
                has_more=len(models) > len(page),
                first_id=page[0].id if page else None,
                last_id=page[-1].id if page else None,
            )
        )

    async def get_model(self, request: Request) -> Response:
        model_id = request.path_params["model_id"]
        for model in self._models():
            if model.id == model_id:
                return _json(model)
        # Every other name is served too (the routing rule's fallbacks): say by which CLI.
        names = self.services.runner.names()
        route = route_model(model_id, self.services.config, names)
        if not model_id or route.backend not in names:
            raise HTTPException(404, f"model {model_id!r} not found")
        return _json(self._model(model_id, f"{model_id} (served by the {route.backend} CLI)"))


def anthropic_app(services: Services) -> Starlette:
    """The `/anthropic/v1` sub-application."""
    api = AnthropicApi(services)
    routes = []
    for prefix in ("", "/v1"):
        routes += [
            Route(f"{prefix}/messages", api.messages, methods=["POST"]),
            Route(f"{prefix}/messages/count_tokens", api.count_tokens, methods=["POST"]),
            Route(f"{prefix}/models", api.list_models, methods=["GET"]),
            Route(f"{prefix}/models/{{model_id:path}}", api.get_model, methods=["GET"]),
        ]
    return Starlette(
        routes=routes,
        exception_handlers={
            HTTPException: handle_http,
            ClinvkError: handle_clinvk,
            Exception: handle_unexpected,
        },
    )
