"""The tests' PostgreSQL fixture cleans up after a test process that was killed: its
lifeline stops the server at once, and a later start sweeps what a killed lifeline left."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg

from tests.support.postgres import sweep_stale

# A test process that starts a server, says where, and waits to be killed.
_CHILD = """
import json, sys, time
sys.path.insert(0, sys.argv[1])
from tests.support.postgres import PostgresServer
server = PostgresServer()
server.start()
print(json.dumps({"root": str(server.root), "url": server.url(),
                  "lifeline": server._lifeline.pid}), flush=True)
time.sleep(3600)
"""

ROOT = Path(__file__).resolve().parents[2]


def _start_child() -> tuple[subprocess.Popen, dict]:
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(ROOT)], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    with child.stdout:
        return child, json.loads(child.stdout.readline())


def _reachable(url: str) -> bool:
    try:
        psycopg.connect(url, connect_timeout=2).close()
    except psycopg.OperationalError:
        return False
    return True


def _wait_gone(root: Path) -> None:
    while root.exists():  # pytest's timeout guards this
        time.sleep(0.1)


def test_a_killed_test_process_takes_its_server_with_it() -> None:
    """SIGKILL of the process that started a server: its lifeline stops the server and
    removes the folder."""
    child, where = _start_child()
    assert _reachable(where["url"])
    child.kill()
    child.wait()
    _wait_gone(Path(where["root"]))
    assert not _reachable(where["url"])


def test_servers_of_dead_processes_are_swept_at_start() -> None:
    """With the test process and its lifeline both killed, the next sweep stops the server
    and removes its folder; a live process's server is left alone."""
    live, kept = _start_child()
    child, where = _start_child()
    try:
        os.kill(where["lifeline"], signal.SIGKILL)
        child.kill()
        child.wait()
        assert _reachable(where["url"]) and Path(where["root"]).exists()
        sweep_stale()
        assert not Path(where["root"]).exists()
        assert not _reachable(where["url"])
        assert _reachable(kept["url"]) and Path(kept["root"]).exists()
    finally:
        live.kill()
        live.wait()
        _wait_gone(Path(kept["root"]))
