"""/docs in a real headless Chromium (Debian's), against a real uvicorn server."""

from __future__ import annotations

import contextlib
import html
import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import uvicorn

from clinvk.adapters.http.app import create_app

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


def chromium() -> str:
    """Debian's chromium; scripts/test.sh installs it on a fresh machine."""
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.fail("chromium is not installed; run scripts/test.sh (it installs Debian's "
                    "chromium package)", pytrace=False)
    return exe


@contextlib.contextmanager
def serve(app) -> Iterator[str]:
    """Run `app` under uvicorn on a free loopback port in a thread; yield its URL."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30  # a hang guard only
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(10)


def dump_dom(url: str, profile) -> str:
    """The page's DOM after its scripts ran (virtual time lets the fetch finish)."""
    done = subprocess.run(
        [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
         "--virtual-time-budget=10000", "--dump-dom", url],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.fixture
def server_url(services):
    with serve(create_app(services)) as url:
        yield url


def test_docs_page_renders_every_operation(server_url, tmp_path):
    """The page fetches /openapi.json and shows each operation of all three dialects."""
    document = httpx.get(server_url + "/openapi.json").json()
    expected = {f"{m.upper()} {p}" for p, item in document["paths"].items() for m in item}
    dom = dump_dom(server_url + "/docs", tmp_path / "profile")
    shown = {html.unescape(op) for op in re.findall(r'data-operation="([^"]+)"', dom)}
    assert shown == expected
    assert {"POST /api/v1/prompt", "POST /openai/v1/chat/completions",
            "POST /anthropic/v1/messages", "GET /health"} <= shown
    assert f"{len(expected)} operations" in dom
    # The request form starts from an example built from the schema.
    assert "&quot;backend&quot;: &quot;string&quot;" in dom or '"backend": "string"' in dom


def test_docs_page_asks_for_the_key_when_auth_is_on(services, tmp_path):
    """With keys configured the page still loads and asks for the key instead of failing."""
    with serve(create_app(services, api_keys=["k"])) as url:
        dom = dump_dom(url + "/docs", tmp_path / "profile")
        assert "requires an API key" in dom
        assert "data-operation=" not in dom
