"""Wire the MCP adapter: `/mcp` on `clinvk serve`, and `clinvk mcp` over stdio or HTTP."""

from __future__ import annotations

import contextlib
import os
import re
import signal
from collections.abc import AsyncIterator, Callable, Sequence

import anyio
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from clinvk.adapters.http.health import HealthReport
from clinvk.adapters.http.middleware import middleware_stack
from clinvk.adapters.http.middleware.cors import LOCALHOST_ORIGINS
from clinvk.adapters.logging import configure_logging, get_logger
from clinvk.adapters.mcp import protocol
from clinvk.adapters.mcp.http import McpEndpoint
from clinvk.adapters.mcp.server import McpServer
from clinvk.adapters.mcp.stdio import serve_stdio, stdin_lines, write_stdout
from clinvk.adapters.mcp.tools import Tools
from clinvk.adapters.secrets import SecretsError, load_api_keys
from clinvk.domain.config import Config, ServerConfig
from clinvk.domain.services import Services
from clinvk.entrypoints.bootstrap import bootstrap


def origin_rule(server: ServerConfig) -> Callable[[str], bool]:
    """Which browser origins may call the MCP endpoint: the CORS setting's, else localhost."""
    allowed = list(server.cors_allowed_origins)
    if "*" in allowed:
        return lambda origin: True
    if allowed:
        return lambda origin: origin in allowed
    pattern = re.compile(LOCALHOST_ORIGINS)
    return lambda origin: pattern.match(origin) is not None


def mcp_server(services: Services, *, demo: bool = False) -> McpServer:
    """The MCP dispatcher with the nine tools bound to `services`."""
    return McpServer(Tools(services, HealthReport(services, demo=demo)))


def mcp_routes(services: Services, *, path: str = "/mcp", demo: bool = False
               ) -> list[BaseRoute]:
    """The MCP endpoint as a route (every method; it answers 405 itself)."""
    server = services.config.server
    endpoint = McpEndpoint(
        mcp_server(services, demo=demo),
        heartbeat_secs=server.heartbeat_secs,
        origin_allowed=origin_rule(server),
    )
    return [Route(path, endpoint=endpoint)]


def _cleanup(services: Services) -> None:
    runner = services.runner
    stop_probes = getattr(runner, "stop_probes", None)
    if stop_probes is not None:
        stop_probes()
    groups = getattr(runner, "groups", None)
    if groups is not None:
        groups.terminate_all()


def _prepare(services: Services) -> None:
    """Find the CLIs and start their `--version` probes, as `clinvk serve` does."""
    from clinvk.entrypoints.server import backend_reporter  # server imports this module

    runner = services.runner
    discover = getattr(runner, "discover", None)
    if discover is not None:
        discover()
    probe_versions = getattr(runner, "probe_versions", None)
    if probe_versions is not None:
        probe_versions(backend_reporter(get_logger("clinvk.backends")))


def run_mcp(config: Config, *, transport: str, expose_health: bool) -> int:
    """Run `clinvk mcp` until its input ends (stdio) or it is interrupted (HTTP)."""
    configure_logging()  # stderr: stdout belongs to the protocol
    log = get_logger("clinvk.mcp")
    try:
        keys = load_api_keys(os.environ, config.server.api_keys_gopass_path)
    except SecretsError as exc:
        if transport == "http":
            log.error("cannot load API keys; not starting", error=str(exc))
            return 2
        keys = []  # stdio has no keys to check; only the CLIs' environment lacks them
    services = bootstrap(config, secrets=keys)
    _prepare(services)
    if transport == "stdio":
        log.info("clinvk MCP server on stdio",
                 backends={b.name: b.available for b in services.backends()})
        try:
            anyio.run(_serve_stdio, services)
        finally:
            _cleanup(services)
        return 0
    return _serve_http(config, services, keys, expose_health, log)


async def _serve_stdio(services: Services) -> None:
    server = mcp_server(services)
    async with anyio.create_task_group() as tg:

        async def on_signal() -> None:
            with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                async for _ in signals:
                    tg.cancel_scope.cancel()  # every running tool ends its CLI's group
                    return

        tg.start_soon(on_signal)
        await serve_stdio(server, stdin_lines(), write_stdout)
        tg.cancel_scope.cancel()
    await services.sessions.purge_expired()


def _serve_http(config: Config, services: Services, keys: Sequence[str], expose_health: bool,
                log) -> int:
    mcp = config.mcp
    path = mcp.http_path if mcp.http_path.startswith("/") else "/" + mcp.http_path
    routes = mcp_routes(services, path=path)
    if expose_health:
        report = HealthReport(services)

        async def health(request: Request) -> Response:
            body = await report()
            return Response(protocol.encode(body), 200 if body.status != "unhealthy" else 503,
                            media_type="application/json")

        routes.append(Route("/health", health, methods=["GET"]))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            _cleanup(services)

    app = Starlette(
        routes=routes,
        middleware=middleware_stack(config.server, routes=routes, api_keys=keys),
        lifespan=lifespan,
    )
    log.info("clinvk MCP server listening", url=f"http://{mcp.host}:{mcp.port}{path}",
             auth="api keys" if keys else "off", health=expose_health)
    server = config.server
    uvicorn.run(
        app, host=mcp.host, port=mcp.port,
        timeout_keep_alive=max(1, round(server.idle_timeout_secs)),
        timeout_graceful_shutdown=max(0, round(server.shutdown_grace_secs)),
        log_config=None, log_level="info", access_log=False,
    )
    return 0
