"""An ASGI wrapper that records each request's method, path, headers and JSON body, so a
test can assert on what a client library really sent."""

from __future__ import annotations

import json


class RequestRecorder:
    """Passes every request on to `app`, keeping (method, path, query, headers, body)."""

    def __init__(self, app) -> None:
        self.app = app
        self.requests: list[dict] = []

    def bodies(self, path_suffix: str) -> list[dict]:
        """The JSON bodies of the recorded POSTs whose path ends with `path_suffix`."""
        return [r["body"] for r in self.requests
                if r["method"] == "POST" and r["path"].endswith(path_suffix)]

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        done = False

        async def recording_receive():
            nonlocal done
            message = await receive()
            if message["type"] == "http.request" and not done:
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    done = True
                    raw = b"".join(chunks)
                    try:
                        body = json.loads(raw) if raw else None
                    except ValueError:
                        body = raw
                    self.requests.append({
                        "method": scope["method"], "path": scope["path"],
                        "query": scope.get("query_string", b"").decode(),
                        "headers": {k.decode(): v.decode() for k, v in scope["headers"]},
                        "body": body,
                    })
            return message

        await self.app(scope, recording_receive, send)
