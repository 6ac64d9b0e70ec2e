"""A real uvicorn server running an ASGI app in a background thread, for SDK tests."""

from __future__ import annotations

import socket
import threading
import time
from typing import Self

import uvicorn


class LiveServer:
    """uvicorn serving `app` on a free loopback port; `url` is its base URL."""

    def __init__(self, app) -> None:
        # IPPROTO_TCP as `uvicorn --port` gets it: asyncio sets TCP_NODELAY only then, and
        # without it each answer's body waits for the client's delayed ACK (40 ms).
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        config = uvicorn.Config(
            app, log_config=None, log_level="warning", lifespan="on", access_log=False,
            ws="none",
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )

    def __enter__(self) -> Self:
        self.thread.start()
        deadline = time.monotonic() + 30  # a hang guard only
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.01)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()
