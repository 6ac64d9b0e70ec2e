"""The OpenAPI 3.1 description (`/openapi.json`) and the API UI (`/docs`).

Nothing here is hand-written JSON Schema: every body is described by the msgspec type
the handlers decode or encode (`msgspec.json.schema_components`, which speaks JSON Schema
2020-12, the dialect OpenAPI 3.1 uses). Each dialect contributes a `Dialect`: its mount
prefix, its error envelope and a list of `Operation`s (method, path, request type,
response type, summary). A test checks that every route the app serves is described, so
a new route without an operation fails the build.

/docs is a small self-contained page (`static/docs.html` + `docs.js` + `docs.css`, served
by clinvk, no CDN) that fetches /openapi.json and renders every operation, with a form to
try it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from importlib import resources
from typing import Annotated, Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from clinvk.adapters.http.anthropic import schemas as anthropic
from clinvk.adapters.http.native import orchestration_schemas as orchestration
from clinvk.adapters.http.native import schemas as native
from clinvk.adapters.http.openai import responses_schemas as responses
from clinvk.adapters.http.openai import schemas as openai
from clinvk.domain.models import Session, SessionQuery

JSON = "application/json"
PROBLEM = "application/problem+json"
NDJSON = "application/x-ndjson"
SSE = "text/event-stream"


class Stream(msgspec.Struct, frozen=True, kw_only=True):
    """Another media type of a 200: a stream of typed lines or events, or plain text."""

    media_type: str
    #: Type of one NDJSON line / one SSE event's data (or of the whole text body).
    item: Any
    description: str
    #: A last SSE `data:` that is not JSON (OpenAI's `[DONE]`).
    terminator: str | None = None


class Operation(msgspec.Struct, frozen=True, kw_only=True):
    """One HTTP operation, described by the msgspec types of its bodies."""

    method: str
    #: Path below the dialect's prefix, Starlette syntax (`{id}` or `{id:path}`).
    path: str
    summary: str
    description: str = ""
    #: Type of the JSON request body; None = no body.
    request: Any = None
    #: Type of the 200 body; None = no JSON body.
    response: Any = None
    #: Media type of `response`.
    response_media_type: str = JSON
    #: Other media types the 200 can have (streams, plain text).
    streams: tuple[Stream, ...] = ()
    #: A Struct whose fields are the query parameters.
    query: Any = None
    #: Optional request headers: (name, description).
    headers: tuple[tuple[str, str], ...] = ()
    #: Statuses answered with the dialect's error envelope (beyond the common ones).
    errors: tuple[int, ...] = ()
    #: Statuses answered with the 200's body (e.g. /health's 503 `unhealthy`).
    ok_statuses: tuple[int, ...] = (200,)
    #: Descriptions of statuses that mean something else here than in `_STATUS_TEXT`.
    status_text: tuple[tuple[int, str], ...] = ()
    #: Served without an API key (and not rate limited).
    public: bool = False


class Dialect(msgspec.Struct, frozen=True, kw_only=True):
    """A group of operations under one prefix, sharing an error envelope."""

    name: str
    prefix: str
    description: str
    error: Any
    error_media_type: str = JSON
    operations: tuple[Operation, ...]


class AnthropicModelsQuery(msgspec.Struct, frozen=True, kw_only=True):
    """Query of GET /anthropic/v1/models (as on Anthropic's API)."""

    limit: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 20
    after_id: str | None = None
    before_id: str | None = None


_RUN_ERRORS = (400, 403, 404, 409, 429, 502, 503, 504)
_STATUS_TEXT = {
    400: "Invalid request (names the offending field)",
    401: "Missing or invalid API key (only when keys are configured)",
    403: "Forbidden (e.g. the workdir policy refused the workdir; the rule is named)",
    404: "Not found",
    408: "The request body did not arrive within read_timeout_secs",
    409: "The session is busy with another request",
    413: "The request body is larger than max_request_body_bytes",
    429: "Rate limited (Retry-After, X-RateLimit-*) or too many runs at once",
    500: "Internal error (details only in the server log)",
    502: "The backend CLI ran and failed (its own message)",
    503: "The backend CLI is not installed or not enabled",
    504: "The run or the request exceeded its deadline",
}

_PROGRESS = Stream(media_type=NDJSON, item=orchestration.ProgressLine,
                   description="Progress, one line per event (stream: true)")

NATIVE = Dialect(
    name="native",
    prefix="/api/v1",
    description="clinvk's own REST API",
    error=native.Problem,
    error_media_type=PROBLEM,
    operations=(
        Operation(
            method="POST", path="/prompt", summary="Run one prompt on one backend",
            description="`output_format: stream-json` (or `Accept: application/x-ndjson`) "
            "streams one unified event per line; `text` answers with the output only.",
            request=native.NativePromptRequest, response=native.PromptResponse,
            streams=(Stream(media_type=NDJSON, item=native.StreamLine,
                            description="One unified event per line"),
                     Stream(media_type="text/plain", item=str,
                            description="The output only (output_format: text)")),
            errors=_RUN_ERRORS,
        ),
        Operation(
            method="POST", path="/parallel", summary="Run several prompts at once",
            request=orchestration.ParallelBody, response=orchestration.ParallelResponse,
            streams=(_PROGRESS,),
            errors=_RUN_ERRORS,
        ),
        Operation(
            method="POST", path="/chain", summary="Run prompts in sequence, each seeing the last",
            request=orchestration.ChainBody, response=orchestration.ChainResponse,
            streams=(_PROGRESS,),
            errors=_RUN_ERRORS,
        ),
        Operation(
            method="POST", path="/compare", summary="Ask several backends the same prompt",
            request=orchestration.CompareBody, response=orchestration.CompareResponse,
            streams=(_PROGRESS,),
            errors=_RUN_ERRORS,
        ),
        Operation(method="GET", path="/backends", summary="List backends and availability",
                  response=native.BackendsResponse),
        Operation(method="GET", path="/sessions", summary="List sessions, newest first",
                  query=SessionQuery, response=native.SessionsResponse, errors=(400,)),
        Operation(method="GET", path="/sessions/{session_id}", summary="Get one session",
                  response=Session, errors=(404,)),
        Operation(method="DELETE", path="/sessions/{session_id}", summary="Delete one session",
                  response=native.DeletedResponse, errors=(404,)),
    ),
)

OPENAI = Dialect(
    name="openai",
    prefix="/openai/v1",
    description="OpenAI-compatible API (the OpenAI SDKs work with base_url .../openai/v1)",
    error=openai.OpenAIError,
    operations=(
        Operation(method="GET", path="/models", summary="List models (one per backend, plus aliases)",
                  response=openai.OpenAIModelList),
        Operation(method="GET", path="/models/{model_id:path}", summary="Get one model",
                  response=openai.OpenAIModel, errors=(404,)),
        Operation(
            method="POST", path="/chat/completions", summary="Create a chat completion",
            description="`stream: true` answers with `chat.completion.chunk` server-sent "
            "events, then `data: [DONE]`.",
            request=openai.OpenAIChatRequest, response=openai.OpenAIChatCompletion,
            streams=(Stream(media_type=SSE, item=openai.OpenAIChatCompletionChunk,
                            description="`chat.completion.chunk` events", terminator="[DONE]"),),
            errors=_RUN_ERRORS,
        ),
        Operation(
            method="POST", path="/responses", summary="Create a response (Responses API)",
            description="`previous_response_id` continues the clinvk session of that "
            "response (the CLI resumes its own session). `stream: true` answers with "
            "`response.*` server-sent events named by their `type`.",
            request=responses.OpenAIResponsesRequest, response=responses.OpenAIResponse,
            streams=(Stream(media_type=SSE, item=responses.ResponsesStreamEvent,
                            description="`response.*` events (`event:` is the `type`)"),),
            errors=_RUN_ERRORS,
        ),
        Operation(method="GET", path="/responses/{response_id}",
                  summary="Get a stored response", response=responses.OpenAIResponse,
                  errors=(404,)),
        Operation(method="DELETE", path="/responses/{response_id}",
                  summary="Delete a stored response",
                  response=responses.OpenAIResponseDeleted, errors=(404,)),
    ),
)


def _anthropic_operations() -> tuple[Operation, ...]:
    ops: list[Operation] = []
    for prefix in ("", "/v1"):
        alias = " (alias for SDK base URLs without /v1)" if prefix else ""
        ops += [
            Operation(
                method="POST", path=f"{prefix}/messages", summary=f"Create a message{alias}",
                description="`stream: true` answers with Anthropic's named server-sent events "
                "(message_start ... message_stop).",
                request=anthropic.AnthropicMessagesRequest,
                response=anthropic.AnthropicMessage,
                streams=(Stream(media_type=SSE, item=anthropic.AnthropicStreamEvent,
                                description="Named events, `event:` = the data's `type`"),),
                headers=(("anthropic-version", "Accepted (e.g. 2023-06-01); not required"),
                         ("anthropic-beta", "Accepted and ignored")),
                errors=_RUN_ERRORS,
            ),
            Operation(
                method="POST", path=f"{prefix}/messages/count_tokens",
                summary=f"Estimate a message's input tokens{alias}",
                description="An estimate, not a tokenizer's count: characters / 4 over the "
                "prompt clinvk would send, the system prompt and the tools' JSON.",
                request=anthropic.AnthropicCountTokensRequest,
                response=anthropic.AnthropicTokenCount, errors=(400,),
            ),
            Operation(method="GET", path=f"{prefix}/models", summary=f"List models{alias}",
                      query=AnthropicModelsQuery, response=anthropic.AnthropicModelList,
                      errors=(400,)),
            Operation(method="GET", path=f"{prefix}/models/{{model_id:path}}",
                      summary=f"Get one model{alias}", response=anthropic.AnthropicModel,
                      errors=(404,)),
        ]
    return tuple(ops)


ANTHROPIC = Dialect(
    name="anthropic",
    prefix="/anthropic/v1",
    description="Anthropic-compatible API (the Anthropic SDKs work with base_url .../anthropic/v1)",
    error=anthropic.AnthropicError,
    operations=_anthropic_operations(),
)

#: The three API dialects, in the order the document lists them.
DIALECTS = (NATIVE, OPENAI, ANTHROPIC)


def meta_dialect(health: Any, *, metrics: bool) -> Dialect:
    """The meta endpoints (/health, /openapi.json, /docs, /metrics when enabled)."""
    ops = [
        Operation(method="GET", path="/health", summary="Health of the server and its backends",
                  description="`degraded`: a backend is unavailable; `unhealthy` (503): the "
                  "session store is unavailable.", response=health, ok_statuses=(200, 503), public=True,
                  status_text=((503, "unhealthy: the session store is unavailable (body: Health)"),)),
        Operation(method="GET", path="/openapi.json", summary="This OpenAPI description",
                  response=dict[str, Any]),
        Operation(method="GET", path="/docs", summary="API documentation UI (no internet needed)",
                  response=str, response_media_type="text/html", public=True),
    ]
    if metrics:
        ops.append(Operation(method="GET", path="/metrics", summary="Prometheus metrics",
                             response=str, response_media_type="text/plain"))
    return Dialect(name="meta", prefix="", description="Meta endpoints", error=native.Problem,
                   error_media_type=PROBLEM, operations=tuple(ops))


_PARAM = re.compile(r"\{([^}:]+)(?::[^}]+)?\}")


class _Schemas:
    """Every body type of the document, turned into JSON Schema by msgspec in one pass
    (so shared types become one component each)."""

    def __init__(self, dialects: Sequence[Dialect]) -> None:
        types: list[Any] = []
        for dialect in dialects:
            types.append(dialect.error)
            for op in dialect.operations:
                types += [t for t in (op.request, op.response, op.query) if t is not None]
                types += [stream.item for stream in op.streams]
        schemas, self.components = msgspec.json.schema_components(
            types, ref_template="#/components/schemas/{name}"
        )
        # A type listed twice gets the same schema both times.
        self._by_type = dict(zip(types, schemas))

    def __getitem__(self, t: Any) -> dict[str, Any]:
        return self._by_type[t]

    def resolved(self, t: Any) -> dict[str, Any]:
        """The schema of `t` with a top-level $ref followed (for query structs)."""
        schema = self[t]
        ref = schema.get("$ref", "")
        return self.components[ref.rsplit("/", 1)[-1]] if ref else schema


def build_openapi(
    dialects: Sequence[Dialect], *, version: str, auth_required: bool = False
) -> dict[str, Any]:
    """The OpenAPI 3.1 document for these dialects."""
    schemas = _Schemas(dialects)
    paths: dict[str, dict[str, Any]] = {}
    for dialect in dialects:
        for op in dialect.operations:
            path = _PARAM.sub(r"{\1}", dialect.prefix + op.path)
            paths.setdefault(path, {})[op.method.lower()] = _operation(dialect, op, schemas)
    security: list[dict[str, list[str]]] = [{"bearerAuth": []}, {"apiKeyAuth": []}]
    if not auth_required:
        security.append({})  # keys are optional until some are configured
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "clinvk",
            "version": version,
            "description": "The AI coding CLIs (claude, codex, gemini) as an HTTP API: a native "
            "REST dialect, an OpenAI-compatible one and an Anthropic-compatible one.",
        },
        "tags": [{"name": d.name, "description": d.description} for d in dialects],
        "paths": paths,
        "components": {
            "schemas": schemas.components,
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer"},
                "apiKeyAuth": {"type": "apiKey", "in": "header", "name": "X-Api-Key"},
            },
        },
        "security": security,
    }


def _operation(dialect: Dialect, op: Operation, schemas: _Schemas) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "operationId": _operation_id(dialect.name, op),
        "summary": op.summary,
        "tags": [dialect.name],
    }
    if op.description:
        operation["description"] = op.description
    params = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in _PARAM.findall(op.path)
    ]
    if op.query is not None:
        query = schemas.resolved(op.query)
        required = set(query.get("required", ()))
        for name, schema in query.get("properties", {}).items():
            params.append(_query_param(name, schema, required=name in required))
    for name, text in op.headers:
        params.append({"name": name, "in": "header", "required": False,
                       "description": text, "schema": {"type": "string"}})
    if params:
        operation["parameters"] = params
    if op.request is not None:
        operation["requestBody"] = {
            "required": True, "content": {JSON: {"schema": schemas[op.request]}},
        }
    operation["responses"] = _responses(dialect, op, schemas)
    if op.public:
        operation["security"] = []
    return operation


def _responses(dialect: Dialect, op: Operation, schemas: _Schemas) -> dict[str, Any]:
    content: dict[str, Any] = {}
    if op.response is not None:
        content[op.response_media_type] = {"schema": schemas[op.response]}
    for stream in op.streams:
        content[stream.media_type] = _stream_content(stream, schemas[stream.item])
    texts = dict(op.status_text)
    responses: dict[str, Any] = {}
    for status in op.ok_statuses:
        responses[str(status)] = {"description": texts.get(status, "OK")}
        if content:
            responses[str(status)]["content"] = content
    # What the middleware can answer anywhere: 401/429 unless public; 408/413 for bodies;
    # 504 when the deadline passes; 500 always.
    statuses = set(op.errors) | {500}
    if not op.public:
        statuses |= {401, 429}
    if op.request is not None:
        statuses |= {408, 413, 504}
    error = {dialect.error_media_type: {"schema": schemas[dialect.error]}}
    for status in sorted(statuses - set(op.ok_statuses)):
        text = texts.get(status, _STATUS_TEXT[status])
        responses[str(status)] = {"description": text, "content": error}
    return responses


def _query_param(name: str, schema: dict[str, Any], *, required: bool) -> dict[str, Any]:
    # A query string cannot say null: an optional parameter is left out (or sent empty,
    # which the handlers read as "not given").
    options = schema.get("anyOf")
    if options and {"type": "null"} in options:
        rest = [o for o in options if o != {"type": "null"}]
        schema = {k: v for k, v in schema.items() if k != "anyOf"}
        schema.update(rest[0] if len(rest) == 1 else {"anyOf": rest})
        if schema.get("default", 0) is None:
            del schema["default"]
    param = {"name": name, "in": "query", "required": required, "schema": schema}
    if not required:
        param["allowEmptyValue"] = True
    return param


def _stream_content(stream: Stream, item: dict[str, Any]) -> dict[str, Any]:
    if stream.media_type == SSE:
        # One event as tools read it ({"event", "data"}); the data is JSON of the item type
        # (contentMediaType/contentSchema, as OpenAPI 3.2's itemSchema examples do).
        data: dict[str, Any] = {
            "type": "string", "contentMediaType": JSON, "contentSchema": item,
        }
        if stream.terminator is not None:
            data = {"anyOf": [{"const": stream.terminator}, data]}
        return {"schema": {
            "type": "object",
            "description": stream.description,
            "required": ["data"],
            "properties": {"event": {"type": "string"}, "data": data, "id": {"type": "string"}},
        }}
    if stream.media_type == NDJSON:
        # The body is text; the schema of each line rides along as an extension.
        return {
            "schema": {"type": "string", "description": f"{stream.description} (NDJSON)"},
            "x-item-schema": item,
        }
    return {"schema": item}


def _operation_id(dialect: str, op: Operation) -> str:
    words = re.sub(r"\{[^}]*\}", "by_id", op.path).strip("/").replace("/", "_").replace(".", "_")
    return f"{dialect}_{op.method.lower()}_{words or 'root'}"


# -- routes ------------------------------------------------------------------------------

_STATIC = resources.files("clinvk.adapters.http") / "static"
#: The page loads only its own script and style, and talks only to this server.
_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_ASSETS = {
    "/docs": ("docs.html", "text/html; charset=utf-8"),
    "/docs/docs.js": ("docs.js", "text/javascript; charset=utf-8"),
    "/docs/docs.css": ("docs.css", "text/css; charset=utf-8"),
}


def openapi_routes(document: dict[str, Any]) -> list[Route]:
    """Routes serving the document at /openapi.json and the UI at /docs."""
    encoded = msgspec.json.encode(document)

    async def openapi_json(request: Request) -> Response:
        return Response(encoded, media_type=JSON)

    routes = [Route("/openapi.json", openapi_json, methods=["GET"])]
    for path, (name, media_type) in _ASSETS.items():
        body = (_STATIC / name).read_bytes()
        headers = {"Content-Security-Policy": _CSP, "X-Content-Type-Options": "nosniff",
                   "Cache-Control": "no-cache"}

        async def asset(request: Request, body: bytes = body, media_type: str = media_type,
                        headers: dict[str, str] = headers) -> Response:
            return Response(body, media_type=media_type, headers=headers)

        # The page's own files are not API operations (the page itself is).
        routes.append(Route(path, asset, methods=["GET"], include_in_schema=path == "/docs"))
    return routes
