"""Issue 14: what the session store costs per turn, file store against PostgreSQL.

One turn's store work is what the prompt service and the portable-session decorator do for a
resumed turn: read the session, hold it for the run, load the CLI's stored session file,
save the new one (a 9 KB transcript, claude's size after two short turns) and record the
turn. Measured sequentially (latency per turn) and with 8 concurrent clients on 8 sessions
(turns per second), the PostgreSQL store on a local server started for the run (tests'
fixture: initdb in a temp folder), the file store on the same disk.

    .venv/bin/python bench/session_store.py        # ~1 minute; bench/results/session_store.json
"""

from __future__ import annotations

import datetime
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import anyio
import msgspec

from bench.stats import median, percentile
from clinvk.adapters.sessions.file_store import FileSessionStore
from clinvk.adapters.sessions.postgres_store import PostgresSessionStore
from clinvk.domain.cli_state import CliFile, CliState
from clinvk.domain.models import Session
from tests.support.postgres import PostgresServer

TURNS = 200
CLIENTS = 8
TURNS_PER_CLIENT = 50
TRANSCRIPT = os.urandom(4500).hex().encode()[:9000]


def _session(session_id: str) -> Session:
    return Session(id=session_id, backend="claude", created_at="2026-11-30T00:00:00Z",
                   last_used="2026-11-30T00:00:00Z", working_dir="/work",
                   backend_session_id=f"cli-{session_id}")


def _bump(session: Session) -> Session:
    return msgspec.structs.replace(session, turn_count=session.turn_count + 1)


async def _turn(store: Any, session_id: str) -> None:
    session = await store.get(session_id)
    async with store.hold(session_id):
        await store.load_cli_state("claude", session.backend_session_id)
        await store.save_cli_state(CliState(
            backend="claude", cli_session_id=session.backend_session_id,
            files=[CliFile(path=f"projects/-work/{session.backend_session_id}.jsonl",
                           data=TRANSCRIPT)],
        ))
        await store.update(session_id, _bump)


async def _measure(store: Any) -> dict[str, Any]:
    await store.create(_session("seq"))
    await _turn(store, "seq")  # the first use opens the pool and migrates
    latencies = []
    for _ in range(TURNS):
        started = time.perf_counter()
        await _turn(store, "seq")
        latencies.append((time.perf_counter() - started) * 1000)
    for c in range(CLIENTS):
        await store.create(_session(f"c{c}"))

    async def client(c: int) -> None:
        for _ in range(TURNS_PER_CLIENT):
            await _turn(store, f"c{c}")

    started = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for c in range(CLIENTS):
            tg.start_soon(client, c)
    elapsed = time.perf_counter() - started
    return {
        "turn_ms_p50": round(median(latencies) or 0, 2),
        "turn_ms_p95": round(percentile(latencies, 95) or 0, 2),
        "turns_per_s_8_clients": round(CLIENTS * TURNS_PER_CLIENT / elapsed, 1),
    }


async def main() -> dict[str, Any]:
    results: dict[str, Any] = {
        "when": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "turns": TURNS, "clients": CLIENTS, "turns_per_client": TURNS_PER_CLIENT,
        # The machine's load when the run began and ended (1, 5, 15 minutes): the times
        # are only comparable between runs at similar load.
        "load_average_start": [round(x, 2) for x in os.getloadavg()],
    }
    with tempfile.TemporaryDirectory() as folder:
        results["file"] = await _measure(FileSessionStore(folder))
    with PostgresServer() as server:
        store = PostgresSessionStore(server.new_database())
        try:
            results["postgresql"] = await _measure(store)
        finally:
            await store.aclose()
    results["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    return results


if __name__ == "__main__":
    out = anyio.run(main)
    path = Path(__file__).parent / "results" / "session_store.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))
