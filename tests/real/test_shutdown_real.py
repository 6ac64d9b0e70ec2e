"""Server shutdown with CLIs still running."""

from __future__ import annotations

import json
import signal
import threading

import httpx
import pytest

from tests.support.clis import missing_clis
from tests.support.server import ClinvkServer


@pytest.mark.parametrize("backend", ["claude", "gemini"])
def test_sigterm_leaves_no_cli_process(model_double, tmp_path, backend):
    """SIGTERM to `clinvk serve` during a long answer ends the server and its CLI group."""
    assert not missing_clis()
    server = ClinvkServer(model_double.url, tmp_path, shutdown_grace_secs=1).start()
    try:
        model_double.hold_after(1)  # the answer never ends by itself
        started = threading.Event()

        def client() -> None:
            try:
                with httpx.stream(
                    "POST", server.url + "/api/v1/prompt", timeout=60,
                    json={"backend": backend, "prompt": "long", "output_format": "stream-json"},
                ) as r:
                    for line in r.iter_lines():
                        if line and json.loads(line)["type"] == "delta":
                            started.set()
            except httpx.HTTPError:
                pass

        thread = threading.Thread(target=client, daemon=True)
        thread.start()
        assert started.wait(30), "the CLI never started streaming"
        assert server.cli_pids()
        code = server.stop(signal.SIGTERM)
        assert code is not None and code != -signal.SIGKILL  # it stopped by itself
        assert server.wait_no_cli() == []
    finally:
        server.stop(signal.SIGKILL)
