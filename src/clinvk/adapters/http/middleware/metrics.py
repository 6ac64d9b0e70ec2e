"""Count every HTTP request and its latency under its route template and status."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Protocol

from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from clinvk.adapters.http.middleware.routes import route_template

#: Methods counted under their own name; anything else is `OTHER` (labels stay bounded).
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class RequestObserver(Protocol):
    """Where request measurements go (`clinvk.adapters.metrics.Metrics`)."""

    def request_started(self) -> None:
        """One more request in flight."""
        ...

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        """One request answered."""
        ...

    def exposition(self) -> tuple[bytes, str]:
        """Everything measured, in the Prometheus text format, and its content type."""
        ...


class MetricsMiddleware:
    """Report each HTTP request to the observer once it is answered."""

    def __init__(
        self, app: ASGIApp, *, observer: RequestObserver, routes: Sequence[BaseRoute]
    ) -> None:
        self.app = app
        self.observer = observer
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        # Before the app runs: routing rewrites root_path in this very scope.
        route = route_template(self.routes, scope)
        status = 0

        async def send_recording(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        self.observer.request_started()
        try:
            await self.app(scope, receive, send_recording)
        except Exception:
            status = status or 500
            raise
        finally:
            method = scope["method"] if scope["method"] in METHODS else "OTHER"
            self.observer.observe_request(
                method, route, status,
                time.perf_counter() - started,
            )
