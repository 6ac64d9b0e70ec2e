"""The native REST dialect (`/api/v1`): prompt, backends, sessions."""

from __future__ import annotations

from http import HTTPStatus

import msgspec
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from clinvk.adapters.http.errors import decode_body, retry_headers, status_for
from clinvk.adapters.http.headers import BACKEND_HEADER, SESSION_HEADER
from clinvk.adapters.http.native import tools
from clinvk.adapters.http.native.orchestration import OrchestrationApi
from clinvk.adapters.http.native.schemas import (
    BackendEntry,
    BackendsResponse,
    DeletedResponse,
    NativePromptRequest,
    Problem,
    ProblemDetail,
    PromptResponse,
    SessionsResponse,
    StreamLine,
    prompt_decoder,
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
from clinvk.domain.models import PromptRequest, PromptResult, SessionQuery
from clinvk.domain.services import Services

NDJSON = "application/x-ndjson"
_encode = msgspec.json.Encoder().encode


def _json(value, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(_encode(value), status, headers=headers, media_type="application/json")


def problem(exc: ClinvkError) -> Response:
    """Render a domain error as problem+json with the matching status."""
    status = status_for(exc)
    body = Problem(
        title=HTTPStatus(status).phrase,
        status=status,
        detail=exc.message,
        code=exc.code,
        field=getattr(exc, "field", None),
        error=exc.message,
    )
    if body.field:
        # clinvoker's (huma's) problem bodies list each invalid field here.
        body.errors = [ProblemDetail(message=exc.message, location=f"body.{body.field}")]
    headers = {}
    result = getattr(exc, "result", None)
    if isinstance(result, PromptResult):
        body.session_id = result.session_id
        body.backend = result.backend
        body.exit_code = result.exit_code
        body.output = result.output
        if result.session_id:
            headers[SESSION_HEADER] = result.session_id
    headers.update(retry_headers(exc))
    if "Retry-After" in headers:
        body.retry_after = getattr(exc, "retry_after", None)
    return Response(
        _encode(body), status, headers=headers, media_type="application/problem+json"
    )


def _http_problem(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    body = Problem(
        title=HTTPStatus(exc.status_code).phrase,
        status=exc.status_code,
        detail=str(exc.detail),
        code=HTTPStatus(exc.status_code).phrase.lower().replace(" ", "_"),
    )
    return Response(
        _encode(body), exc.status_code, headers=exc.headers,
        media_type="application/problem+json",
    )


def _clinvk_problem(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ClinvkError)
    return problem(exc)


def prompt_response(result: PromptResult) -> PromptResponse:
    """The wire answer of a prompt result (REST and the MCP tool)."""
    return PromptResponse(
        session_id=result.session_id,
        backend=result.backend,
        exit_code=result.exit_code,
        duration_ms=result.duration_ms,
        output=result.output,
        token_usage=result.token_usage,
        model=result.model,
        stop_reason=result.stop_reason,
        error=result.error,
        command=list(result.command) if result.command else None,
    )


def _line(event: ev.StreamEvent, backend: str, session_id: str | None) -> StreamLine:
    content = msgspec.structs.asdict(event)
    content.pop("session_id", None)
    return StreamLine(type=type(event).__struct_config__.tag, backend=backend,
                      session_id=session_id, content=content)


def _prefers_plain_text(request: Request) -> bool:
    # clinvoker answers every non-stream format with its JSON body, and its clients
    # decode that; the bare text is for clients that ask for it by name.
    accept = request.headers.get("accept", "")
    return "text/plain" in accept and "application/json" not in accept


def _wants_stream(request: Request, body: PromptRequest) -> bool:
    if body.output_format == "stream-json":
        return True
    return body.output_format == "default" and NDJSON in request.headers.get("accept", "")


class NativeApi:
    """Handlers of the native dialect, bound to the services."""

    def __init__(self, services: Services) -> None:
        self.services = services

    async def prompt(self, request: Request) -> Response:
        native: NativePromptRequest = decode_body(prompt_decoder, await request.body())
        runs = self.services.tool_runs
        if runs is not None and tools.applies(native, runs):
            heartbeat = self.services.config.server.heartbeat_secs
            return await tools.ToolPrompt(runs, heartbeat, prompt_response, problem).respond(
                request, native, _wants_stream(request, native))
        if native.tools or native.tool_results:
            raise InvalidRequest("client tools are not available on this server",
                                 field="tools" if native.tools else "tool_results")
        body = native.domain()
        if _wants_stream(request, body):
            return self._stream(body)  # type: ignore[return-value]
        try:
            result = await until_disconnect(request, lambda: self.services.prompt.run(body))
        except ClientDisconnected:
            return Response(status_code=499)
        headers = {BACKEND_HEADER: result.backend}
        if result.session_id:
            headers[SESSION_HEADER] = result.session_id
        if body.output_format == "text" and _prefers_plain_text(request):
            return PlainTextResponse(result.output, headers=headers)
        return _json(prompt_response(result), headers=headers)

    def _stream(self, body: PromptRequest) -> EventStreamResponse:
        backend = body.backend
        heartbeat = self.services.config.server.heartbeat_secs

        async def produce(emit: Emit, response: EventStreamResponse) -> None:
            session_id: str | None = body.session_id

            async def send(event: ev.StreamEvent) -> None:
                nonlocal session_id, backend
                if isinstance(event, ev.Init):
                    session_id = event.session_id
                    if session_id:
                        response.headers[SESSION_HEADER] = session_id
                await emit(_encode(_line(event, backend, session_id)) + b"\n")
                if isinstance(event, ev.Fallback):
                    # Lines after a fallback event come from the next backend.
                    backend = event.next.partition("/")[0]

            try:
                await self.services.prompt.run(body, on_event=send)
            except (BackendFailed, BackendTimeout) as exc:
                if not response.started:
                    raise
                err = ev.Error(message=exc.message, code=exc.code)
                await emit(_encode(_line(err, backend, session_id)) + b"\n")

        return EventStreamResponse(
            produce,
            media_type=NDJSON,
            heartbeat=_encode(StreamLine(type="heartbeat", backend=backend)) + b"\n",
            heartbeat_secs=heartbeat,
            on_early_error=lambda exc: problem(exc) if isinstance(exc, ClinvkError) else None,
            # The backend the stream starts with; a `fallback` line says when it changes.
            headers={BACKEND_HEADER: backend},
        )

    async def backends(self, request: Request) -> Response:
        entries = [
            BackendEntry(
                name=b.name, available=b.available, model=b.model, path=b.path,
                version=b.version,
            )
            for b in self.services.backends()
        ]
        return _json(BackendsResponse(backends=entries))

    async def list_sessions(self, request: Request) -> Response:
        params = request.query_params
        try:
            query = msgspec.convert(
                {k: params[k] for k in ("backend", "status", "limit", "offset") if params.get(k)},
                SessionQuery,
                strict=False,
            )
        except msgspec.ValidationError as exc:
            field = str(exc).rsplit("$.", 1)[-1].rstrip("`") if "$." in str(exc) else None
            raise InvalidRequest(f"invalid query parameter: {exc}", field=field) from None
        page = await self.services.sessions.list(query)
        return _json(SessionsResponse(sessions=page.sessions, total=page.total,
                                      limit=page.limit, offset=page.offset))

    async def session(self, request: Request) -> Response:
        """GET or DELETE one session (one route, so a 405 lists both methods)."""
        if request.method == "DELETE":
            return await self.delete_session(request)
        return await self.get_session(request)

    async def get_session(self, request: Request) -> Response:
        return _json(await self.services.sessions.get(request.path_params["session_id"]))

    async def delete_session(self, request: Request) -> Response:
        session_id = await self.services.sessions.delete(request.path_params["session_id"])
        return _json(DeletedResponse(deleted=True, id=session_id))


def native_app(services: Services) -> Starlette:
    """The `/api/v1` sub-application."""
    api = NativeApi(services)
    routes = [
        Route("/prompt", api.prompt, methods=["POST"]),
        Route("/backends", api.backends, methods=["GET"]),
        Route("/sessions", api.list_sessions, methods=["GET"]),
        Route("/sessions/{session_id}", api.session, methods=["GET", "DELETE"]),
        Route("/parallel", OrchestrationApi(services).parallel, methods=["POST"]),
        Route("/chain", OrchestrationApi(services).chain, methods=["POST"]),
        Route("/compare", OrchestrationApi(services).compare, methods=["POST"]),
    ]
    return Starlette(
        routes=routes,
        exception_handlers={HTTPException: _http_problem, ClinvkError: _clinvk_problem},
    )
