"""The deadline of a whole request: `write_timeout_secs` to finish the response (as Go's
http.Server WriteTimeout, which clinvk's config follows), and a backstop just after
`request_timeout_secs`.

The backend run itself is bounded by `request_timeout_secs` in the domain, which ends the
CLI and answers with the dialect's own timeout error and the partial result; this
middleware only catches what that does not cover (a client that stopped reading, a slow
step outside the run). Past the deadline the app is cancelled (its cleanup, which ends
the CLI's process group, still runs); a response not yet started becomes a 504 in the
path's dialect envelope, one already started is cut off.
"""

from __future__ import annotations

import math

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from clinvk.adapters.http.middleware.envelope import error_response
from clinvk.adapters.logging import get_logger

#: Seconds past request_timeout_secs before the backstop fires, so the domain's own
#: timeout (CLI terminated, partial result kept) always answers first.
BACKSTOP_GRACE_SECS = 5.0

_log = get_logger("clinvk.http")


class RequestTimeoutMiddleware:
    """Cancel a request that runs past its deadline."""

    def __init__(self, app: ASGIApp, *, request_timeout: float, write_timeout: float) -> None:
        self.app = app
        limits = [write_timeout] if write_timeout > 0 else []
        if request_timeout > 0:
            limits.append(request_timeout + BACKSTOP_GRACE_SECS)
        self.deadline = min(limits) if limits else math.inf

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.deadline == math.inf:
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        with anyio.move_on_after(self.deadline) as cancel:
            await self.app(scope, receive, tracking_send)
        if not cancel.cancelled_caught:
            return
        _log.warning(
            "request deadline passed", deadline_secs=self.deadline, response_started=started
        )
        if not started:
            response = error_response(
                scope["path"], 504,
                f"the request did not finish within {self.deadline:g} s",
                code="timeout", headers={"Connection": "close"},
            )
            with anyio.CancelScope(shield=True), anyio.move_on_after(5):
                await response(scope, receive, send)
