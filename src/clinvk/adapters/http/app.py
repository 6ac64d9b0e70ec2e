"""The root ASGI app: meta endpoints, one mounted sub-app per dialect, the lifespan."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Sequence

import msgspec
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route

from clinvk import __version__
from clinvk.adapters.http.anthropic.app import anthropic_app
from clinvk.adapters.http.health import Health, HealthReport
from clinvk.adapters.http.middleware import RequestObserver, middleware_stack
from clinvk.adapters.http.middleware.envelope import error_response, phrase
from clinvk.adapters.http.native.app import native_app
from clinvk.adapters.http.openai.app import openai_app
from clinvk.adapters.http.openapi import (
    DIALECTS,
    build_openapi,
    meta_dialect,
    openapi_routes,
)
from clinvk.domain.services import Services

_encode = msgspec.json.Encoder().encode


def _json(value, status: int = 200) -> Response:
    return Response(_encode(value), status, media_type="application/json")


def create_app(
    services: Services,
    *,
    on_startup: Callable[[], object] | None = None,
    on_shutdown: Callable[[], object] | None = None,
    api_keys: Sequence[str] = (),
    metrics: RequestObserver | None = None,
    demo: bool = False,
    mounts: Sequence[BaseRoute] = (),
) -> Starlette:
    """Assemble the whole HTTP server around the services.

    `api_keys` (non-empty) turns authentication on; `metrics` (given when metrics are
    enabled) counts every request and serves GET /metrics; `demo` says in /health that the
    CLIs talk to clinvk's stand-in model API; `mounts` (the MCP endpoint) are served
    behind the same middleware.
    """
    report = HealthReport(services, demo=demo)

    async def health(request: Request) -> Response:
        body = await report()
        return _json(body, 200 if body.status != "unhealthy" else 503)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if on_startup is not None:
            result = on_startup()
            if hasattr(result, "__await__"):
                await result
        try:
            yield
        finally:
            if on_shutdown is not None:
                result = on_shutdown()
                if hasattr(result, "__await__"):
                    await result

    async def not_found(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        status = exc.status_code
        code = phrase(status).lower().replace(" ", "_")
        return error_response(
            request.url.path, status, str(exc.detail), code=code, headers=exc.headers
        )

    async def server_error(request: Request, exc: Exception) -> Response:
        # Never echo an unexpected exception: it may hold paths, prompts or secrets.
        return error_response(
            request.url.path, 500, "internal error; see the server log", code="internal_error"
        )

    routes = [
        Route("/health", health, methods=["GET"]),
        Mount("/api/v1", app=native_app(services)),
        Mount("/anthropic/v1", app=anthropic_app(services)),
        Mount("/openai/v1", app=openai_app(services)),
        *mounts,
    ]
    if metrics is not None:
        exposition = metrics.exposition

        async def metrics_text(request: Request) -> Response:
            body, content_type = exposition()
            return Response(body, headers={"Content-Type": content_type})

        routes.append(Route("/metrics", metrics_text, methods=["GET"]))
    document = build_openapi(
        [meta_dialect(Health, metrics=metrics is not None), *DIALECTS],
        version=__version__,
        auth_required=bool(api_keys),
    )
    routes += openapi_routes(document)
    return Starlette(
        routes=routes,
        middleware=middleware_stack(
            services.config.server, routes=routes, api_keys=api_keys, metrics=metrics
        ),
        lifespan=lifespan,
        exception_handlers={HTTPException: not_found, Exception: server_error},
    )
