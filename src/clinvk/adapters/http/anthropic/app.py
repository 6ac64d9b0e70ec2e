"""The Anthropic-compatible dialect (`/anthropic/v1`): messages and models, faithful
enough that the official `anthropic` SDK works unchanged.

Routes answer both with and without a second `/v1`: the SDK appends `/v1/messages` to
its base URL, so `base_url=".../anthropic/v1"` (as the docs show) and
`base_url=".../anthropic"` both work.
"""

from __future__ import annotations

from datetime import datetime, timezone

import msgspec
import structlog
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from clinvk.adapters.http.anthropic import schemas as w
from clinvk.adapters.http.anthropic import translate
from clinvk.adapters.http.errors import status_for
from clinvk.adapters.http.streaming import (
    ClientDisconnected,
    Emit,
    EventStreamResponse,
    until_disconnect,
)
from clinvk.domain import events as ev
from clinvk.domain.chat import TextStream, route_model
from clinvk.domain.errors import (
    BackendTimeout,
    BackendUnavailable,
    ClinvkError,
    InvalidRequest,
    Overloaded,
)
from clinvk.domain.models import PromptRequest, PromptResult
from clinvk.domain.services import Services

SSE = "text/event-stream; charset=utf-8"
SESSION_HEADER = "X-Clinvk-Session-Id"

_encode = msgspec.json.Encoder().encode
_log = structlog.get_logger(__name__)

#: Anthropic's error type for each status (their docs: other 4xx use invalid_request_error).
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    502: "api_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}

#: Domain field names as an Anthropic client knows them.
_FIELDS = {
    "backend": "model",
    "model": "model",
    "prompt": "messages",
    "workdir": "clinvk.workdir",
    "max_turns": "clinvk.max_turns",
    "session_id": "clinvk.session_id",
}


def error_type(status: int) -> str:
    """Anthropic's `error.type` for an HTTP status."""
    return _ERROR_TYPES.get(status) or ("api_error" if status >= 500 else "invalid_request_error")


def error_response(
    status: int, message: str, headers: dict[str, str] | None = None
) -> Response:
    """An error in Anthropic's envelope (for shared middleware too: auth 401, body 413)."""
    body = w.ErrorResponse(error=w.ErrorObject(type=error_type(status), message=message))
    return Response(_encode(body), status, headers=headers, media_type="application/json")


def _message_of(exc: ClinvkError) -> str:
    # Anthropic names the offending field first (`messages.1.content.0: ...`).
    if isinstance(exc, InvalidRequest) and exc.field:
        field = _FIELDS.get(exc.field, exc.field)
        if not exc.message.startswith(f"{field}:"):
            return f"{field}: {exc.message}"
    return exc.message


def _domain_error(exc: ClinvkError) -> Response:
    headers: dict[str, str] = {}
    result = getattr(exc, "result", None)
    if isinstance(result, PromptResult) and result.session_id:
        headers[SESSION_HEADER] = result.session_id
    if isinstance(exc, Overloaded):
        headers["Retry-After"] = str(max(1, round(exc.retry_after)))
    if isinstance(exc, (BackendUnavailable, BackendTimeout)):
        # The SDK retries 5xx by default: a missing CLI stays missing, and a retry of a
        # timed-out run would run the whole agent again for as long (as /openai/v1 does).
        headers["x-should-retry"] = "false"
    return error_response(status_for(exc), _message_of(exc), headers)


def _unexpected(exc: BaseException) -> Response:
    # Never echo an unexpected exception: it may hold paths, prompts or secrets.
    _log.error("anthropic request failed", exc_info=exc)
    return error_response(500, "internal error; see the server log")


async def _on_clinvk_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ClinvkError)
    return _domain_error(exc)


async def _on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    message = str(exc.detail)
    if exc.status_code == 404 and message == "Not Found":  # the router's, not ours
        message = f"Not found: {request.method} {request.url.path}"
    return error_response(exc.status_code, message, dict(exc.headers or {}))


async def _on_unexpected(request: Request, exc: Exception) -> Response:
    return _unexpected(exc)


async def _read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing one larger than `limit` bytes (0 = no limit) early."""
    too_large = HTTPException(413, f"request body exceeds {limit} bytes")
    declared = request.headers.get("content-length", "")
    if limit and declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if limit and size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


class MessageStreamWriter:
    """Turns unified events into Anthropic's named SSE events, in Anthropic's order."""

    def __init__(self, *, id: str, model: str) -> None:
        self.id = id
        self.model = model
        self.opened = False
        self.input_tokens = 0
        self._text = TextStream()

    def open(self) -> bytes:
        """message_start and the text block's start (once)."""
        if self.opened:
            return b""
        self.opened = True
        snapshot = w.AnthropicMessageResponse(
            id=self.id,
            content=[],
            model=self.model,
            stop_reason=None,
            usage=w.Usage(input_tokens=self.input_tokens, output_tokens=0),
        )
        return w.sse(w.MessageStart(message=snapshot)) + w.sse(
            w.ContentBlockStart(index=0, content_block=w.TextBlock(text=""))
        )

    def event(self, event: ev.StreamEvent) -> bytes:
        """The SSE bytes one unified event adds (often none)."""
        if isinstance(event, ev.Usage) and not event.cumulative:
            self.input_tokens = translate.usage(event.usage).input_tokens
        if isinstance(event, ev.Init):
            return self.open()
        piece = self._text.text(event)
        if piece is None:
            return b""
        return self.open() + w.sse(
            w.ContentBlockDelta(index=0, delta=w.TextDeltaBody(text=piece))
        )

    def close(self, result: PromptResult) -> bytes:
        """The block's stop, the final stop reason and usage, message_stop."""
        return (
            self.open()
            + w.sse(w.ContentBlockStop(index=0))
            + w.sse(
                w.MessageDelta(
                    delta=w.MessageDeltaBody(stop_reason=translate.stop_reason(result.stop_reason)),
                    usage=translate.usage(result.token_usage),
                )
            )
            + w.sse(w.MessageStop())
        )

    @staticmethod
    def error(exc: ClinvkError | None) -> bytes:
        """The `error` event that ends a stream that has already started."""
        if exc is None:
            kind, message = "api_error", "internal error; see the server log"
        else:
            kind, message = error_type(status_for(exc)), _message_of(exc)
        return w.sse(w.ErrorResponse(error=w.ErrorObject(type=kind, message=message)))


class AnthropicApi:
    """Handlers of the Anthropic dialect, bound to the services."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.started_at = (
            datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")
        )

    async def messages(self, request: Request) -> Response:
        limit = self.services.config.server.max_request_body_bytes
        body = w.decode_messages_request(await _read_body(request, limit))
        prompt = translate.to_prompt_request(
            body, self.services.config, self.services.runner.names()
        )
        if body.stream:
            return self._stream(prompt, model=body.model)  # type: ignore[return-value]
        try:
            result = await until_disconnect(request, lambda: self.services.prompt.run(prompt))
        except ClientDisconnected:
            return Response(status_code=499)
        answer = translate.message(
            id=translate.message_id(),
            model=body.model,
            text=result.output,
            reason=result.stop_reason,
            tokens=result.token_usage,
        )
        headers = {SESSION_HEADER: result.session_id} if result.session_id else None
        return Response(_encode(answer), headers=headers, media_type="application/json")

    def _stream(self, prompt: PromptRequest, *, model: str) -> EventStreamResponse:
        writer = MessageStreamWriter(id=translate.message_id(), model=model)

        async def produce(emit: Emit, response: EventStreamResponse) -> None:
            async def on_event(event: ev.StreamEvent) -> None:
                if isinstance(event, ev.Init) and event.session_id:
                    response.headers[SESSION_HEADER] = event.session_id
                chunk = writer.event(event)
                if chunk:
                    await emit(chunk)

            try:
                result = await self.services.prompt.run(prompt, on_event=on_event)
            except ClinvkError as exc:
                if not response.started:
                    raise  # still an ordinary error response with its status
                await emit(writer.error(exc))
                return
            except Exception:
                if not response.started:
                    raise
                await emit(writer.error(None))
                raise  # logged by the server; the client already has its error event
            await emit(writer.close(result))

        def early(exc: BaseException) -> Response:
            return _domain_error(exc) if isinstance(exc, ClinvkError) else _unexpected(exc)

        return EventStreamResponse(
            produce,
            media_type=SSE,
            heartbeat=w.sse(w.Ping()),
            heartbeat_secs=self.services.config.server.heartbeat_secs,
            on_early_error=early,
            headers={SESSION_HEADER: prompt.session_id} if prompt.session_id else None,
        )

    # -- models -----------------------------------------------------------------------

    def _models(self) -> list[w.ModelInfo]:
        config = self.services.config
        models = [
            w.ModelInfo(id=b.name, display_name=_display(b.name, b.model), created_at=self.started_at)
            for b in self.services.backends()
        ]
        for alias, target in config.model_aliases.items():
            models.append(
                w.ModelInfo(id=alias, display_name=f"{alias} ({target})", created_at=self.started_at)
            )
        return models

    async def list_models(self, request: Request) -> Response:
        models = self._models()
        params = request.query_params
        try:
            limit = int(params.get("limit", "20"))
        except ValueError:
            limit = 0
        if not 1 <= limit <= 1000:
            raise InvalidRequest("limit: must be an integer from 1 to 1000", field="limit")
        ids = [m.id for m in models]
        if params.get("after_id") in ids:
            models = models[ids.index(params["after_id"]) + 1 :]
        elif params.get("before_id") in ids:
            models = models[: ids.index(params["before_id"])][-limit:]
        page = models[:limit]
        listing = w.ModelList(
            data=page,
            has_more=len(models) > len(page),
            first_id=page[0].id if page else None,
            last_id=page[-1].id if page else None,
        )
        return Response(_encode(listing), media_type="application/json")

    async def get_model(self, request: Request) -> Response:
        model_id = request.path_params["model_id"]
        for model in self._models():
            if model.id == model_id:
                return Response(_encode(model), media_type="application/json")
        # Any other name is still served (see route_model); say by which backend.
        names = self.services.runner.names()
        route = route_model(model_id, self.services.config, names)
        if not model_id or route.backend not in names:
            raise HTTPException(404, f"model {model_id!r} not found")
        found = w.ModelInfo(
            id=model_id,
            display_name=f"{model_id} (served by the {route.backend} CLI)",
            created_at=self.started_at,
        )
        return Response(_encode(found), media_type="application/json")


def _display(backend: str, model: str | None) -> str:
    label = {"claude": "Claude Code", "codex": "Codex", "gemini": "Gemini"}.get(backend, backend)
    return f"{label} CLI ({model})" if model else f"{label} CLI"


def anthropic_app(services: Services) -> Starlette:
    """The `/anthropic/v1` sub-application."""
    api = AnthropicApi(services)
    routes = []
    for prefix in ("", "/v1"):
        routes += [
            Route(f"{prefix}/messages", api.messages, methods=["POST"]),
            Route(f"{prefix}/models", api.list_models, methods=["GET"]),
            Route(f"{prefix}/models/{{model_id:path}}", api.get_model, methods=["GET"]),
        ]
    return Starlette(
        routes=routes,
        exception_handlers={
            HTTPException: _on_http_error,
            ClinvkError: _on_clinvk_error,
            Exception: _on_unexpected,
        },
    )

