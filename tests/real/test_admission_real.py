"""Admission control with a real server and real CLIs under a burst of requests."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from tests.support.clis import missing_clis
from tests.support.server import ClinvkServer


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _ppid(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return int(f.read().rsplit(b")", 1)[1].split()[1])
    except (OSError, ValueError):
        return None


def test_32_requests_with_a_limit_of_4(model_double, tmp_path):
    """32 concurrent prompts with max_concurrent_runs 4 run 4 CLIs at once and never more;
    each succeeds or gets a clean 429, and the server's memory stays bounded."""
    assert not missing_clis()
    server = ClinvkServer(model_double.url, tmp_path, max_concurrent_runs=4,
                          queue_max_length=64, queue_max_wait_secs=60).start()
    try:
        # No model call is answered before four CLIs are waiting on the model at once, so
        # any answer at all proves the burst ran four side by side.
        model_double.hold_until(calls=4)
        groups_seen: list[int] = []
        stop = threading.Event()

        def sample() -> None:
            # A running CLI is a marked process whose parent is the server itself (its
            # helpers are the CLI's children).
            while not stop.is_set():
                groups_seen.append(sum(1 for pid in server.cli_pids() if _ppid(pid) == server_pid))
                time.sleep(0.01)

        server_pid = server.process.pid
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        rss_before = _rss_kib(server.process.pid)

        def one(i: int) -> httpx.Response:
            return httpx.post(server.url + "/api/v1/prompt", timeout=120,
                              json={"backend": "codex", "prompt": f"task {i}", "ephemeral": True})

        with ThreadPoolExecutor(max_workers=32) as pool:
            responses = list(pool.map(one, range(32)))
        stop.set()
        sampler.join()
        rss_after = _rss_kib(server.process.pid)
    finally:
        server.stop()

    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {200, 429}, statuses
    assert statuses.count(200) >= 4
    for r in responses:
        if r.status_code == 429:
            assert r.headers["retry-after"] and r.json()["code"] == "overloaded"
        else:
            assert r.json()["output"] == "w0 w1 w2 w3 w4"
    assert max(groups_seen) <= 4, max(groups_seen)
    assert rss_after - rss_before < 60 * 1024, (rss_before, rss_after)
