"""Benchmark: CLI start-up off the request path (issue 15): the warm pool under demand, hot
sessions, and capacity at C=16/32.

    .venv/bin/python bench/demand.py [--phases pool,turn2,mixed,capacity] [--n 12]

Against the model-API double (20 words, 50 ms before each), one `clinvk serve` per setup:

- pool: streamed OpenAI requests for claude, first text; no pool, `warm_pool` 1 and 2 at a
  fixed size, and 1 growing up to 4; requests back to back (one client), 3 s apart, and from
  4 clients at once.
- turn2: a two-turn conversation per CLI (native route, turn 2 streamed): turn 2's first
  text with hot sessions on and off.
- mixed: one-shot requests (4 clients x 6, streamed OpenAI route) and multi-turn
  conversations (3 x 4 turns, native route, 1 s between turns) at once, for one CLI
  (`--mixed-backend`, claude): first text p50/p90 of one-shot requests, first turns and
  later turns, 429s, peak RSS of the whole tree; pool and hot sessions off / pool on / hot
  sessions on / both.
- capacity: C=16 and C=32 clients sending non-streamed native requests to claude with the
  default admission limits (8 runs, queue 64): requests/s, 429s, peak RSS of the server's
  whole process tree; pool + hot sessions on and off.

Writes JSON to bench/results/demand.json (or --out) and prints markdown tables.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import httpx
import yaml

from bench import procstat
from bench.clients import HTTP_TIMEOUT, ROUTES, NativeRoute, Sample, ask, ask_streaming
from bench.phases import DELAY_MS, PROMPT, WORDS, Load, log
from bench.stats import percentile
from tests.support.model_double import ModelDouble
from tests.support.server import ClinvkServer


def start(double: ModelDouble, scratch: Path, *, backends: dict[str, dict] | None = None,
          **server: Any) -> ClinvkServer:
    s = ClinvkServer(double.url, scratch, request_timeout_secs=180, heartbeat_secs=15, **server)
    config = yaml.safe_load(s.config_path.read_text())
    for name, extra in (backends or {}).items():
        config["backends"][name].update(extra)
    s.config_path.write_text(yaml.safe_dump(config))
    return s.start()


def pool_state(client: httpx.Client, url: str, backend: str) -> dict[str, int]:
    health = client.get(url + "/health", timeout=10).json()
    entry = next((b for b in health["backends"] if b["name"] == backend), {})
    return entry.get("warm_pool") or {}


def wait_ready(client: httpx.Client, url: str, backend: str, want: int) -> None:
    deadline = time.monotonic() + 60
    while pool_state(client, url, backend).get("ready", 0) < want:
        if time.monotonic() > deadline:
            log(f"  {backend}: pool not ready after 60 s")
            return
        time.sleep(0.05)


def firsts(samples: list[Sample]) -> list[float]:
    return [s.first_text for s in samples if s.error is None and s.first_text is not None]


def p50(values: list[float]) -> float | None:
    return percentile(values, 50)


# -- pool -------------------------------------------------------------------------------------


POOL_SETUPS = {
    "no pool": {},
    "warm_pool 1 (fixed)": {"warm_pool": 1, "warm_pool_max": 1},
    "warm_pool 2 (fixed)": {"warm_pool": 2, "warm_pool_max": 2},
    "warm_pool 1, max 4": {"warm_pool": 1, "warm_pool_max": 4},
}


def pool_phase(double: ModelDouble, scratch: Path, n: int, backend: str, *,
               setups: list[str] | None = None, **server_config: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    route = ROUTES["openai"]
    for name, section in POOL_SETUPS.items():
        if setups is not None and name not in setups:
            continue
        server = start(double, scratch / f"pool-{len(out)}", backends={backend: section},
                       **server_config)
        client = httpx.Client()
        try:
            if section:
                wait_ready(client, server.url, backend, section["warm_pool"])
            time.sleep(2.0)  # let the first processes finish starting
            load = Load(server.process.pid)
            row: dict[str, Any] = {}
            # back to back, one client
            samples = [ask_streaming(client, server.url, route, backend, PROMPT)
                       for _ in range(n)]
            row["back_to_back"] = _row(samples, client, server, backend)
            time.sleep(3.0)
            spaced = []
            for _ in range(max(4, n // 2)):
                spaced.append(ask_streaming(client, server.url, route, backend, PROMPT))
                time.sleep(3.0)
            row["spaced_3s"] = _row(spaced, client, server, backend)
            time.sleep(3.0)
            row["clients_4"] = _concurrent(server, backend, clients=4, each=max(3, n // 4))
            row["other_load_cores"] = load.other_cores()
            out[name] = row
            log(f"  {backend} {name}: b2b p50 {_f(row['back_to_back']['first_p50'])} "
                f"(3rd on {_f(row['back_to_back']['first_p50_from_3rd'])}), "
                f"spaced {_f(row['spaced_3s']['first_p50'])}, "
                f"4 clients {_f(row['clients_4']['first_p50'])}")
        finally:
            client.close()
            server.stop()
    return out


def _row(samples: list[Sample], client, server, backend) -> dict[str, Any]:
    values = firsts(samples)
    return {
        "n": len(samples),
        "errors": sum(s.error is not None for s in samples),
        "first_p50": p50(values),
        "first_p50_from_3rd": p50(firsts(samples[2:])),
        "firsts": [round(v, 3) for v in values],
        "pool": pool_state(client, server.url, backend),
    }


def _concurrent(server, backend: str, *, clients: int, each: int) -> dict[str, Any]:
    samples: list[Sample] = []
    lock = threading.Lock()
    route = ROUTES["openai"]

    def worker() -> None:
        with httpx.Client() as c:
            for _ in range(each):
                s = ask_streaming(c, server.url, route, backend, PROMPT)
                with lock:
                    samples.append(s)

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with httpx.Client() as c:
        state = pool_state(c, server.url, backend)
    values = firsts(samples)
    return {"n": len(samples), "errors": sum(s.error is not None for s in samples),
            "first_p50": p50(values), "first_p95": percentile(values, 95), "pool": state}


# -- turn 2 -----------------------------------------------------------------------------------


class _SessionRoute(NativeRoute):
    def __init__(self, session_id: str) -> None:
        self.session_id = session_id

    def body(self, backend: str, prompt: str, stream: bool) -> dict[str, Any]:
        return {**super().body(backend, prompt, stream), "session_id": self.session_id}


def turn2_phase(double: ModelDouble, scratch: Path, n: int,
                backends: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for hot in (0, 4):
        server = start(double, scratch / f"turn2-{hot}", hot_sessions_max=hot)
        client = httpx.Client()
        load = Load(server.process.pid)
        try:
            for backend in backends:
                turn1, turn2 = [], []
                for _ in range(n):
                    r = client.post(server.url + "/api/v1/prompt", timeout=HTTP_TIMEOUT,
                                    json={"backend": backend, "prompt": PROMPT})
                    data = r.json()
                    turn1.append(data.get("duration_ms"))
                    time.sleep(1.0)  # the user reads the answer
                    turn2.append(ask_streaming(client, server.url,
                                               _SessionRoute(data["session_id"]), backend,
                                               PROMPT))
                values = firsts(turn2)
                out.setdefault(backend, {})["hot" if hot else "cold"] = {
                    "n": n, "errors": sum(s.error is not None for s in turn2),
                    "first_p50": p50(values), "firsts": [round(v, 3) for v in values],
                    "turn1_ms_p50": p50([t for t in turn1 if t is not None]),
                    "other_load_cores": load.other_cores(),
                }
                log(f"  {backend} turn 2 {'hot' if hot else 'cold'}: first text p50 "
                    f"{_f(p50(values))}")
        finally:
            client.close()
            server.stop()
    return out


# -- capacity ---------------------------------------------------------------------------------


def capacity_phase(double: ModelDouble, scratch: Path, levels: list[int],
                   backend: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    setups = {
        "pool and hot sessions off": ({}, {}),
        "warm_pool 1 max 4, hot sessions 4": (
            {backend: {"warm_pool": 1, "warm_pool_max": 4}}, {"hot_sessions_max": 4}),
    }
    for name, (backends, server_cfg) in setups.items():
        server = start(double, scratch / f"cap-{len(out)}", backends=backends, **server_cfg)
        try:
            time.sleep(2.0)
            rows = {}
            for clients in levels:
                load = Load(server.process.pid)
                rows[str(clients)] = _capacity_level(server, backend, clients)
                rows[str(clients)]["other_load_cores"] = load.other_cores()
                r = rows[str(clients)]
                log(f"  {backend} {name} C={clients}: {r['ok']} ok, {r['rejected']} 429, "
                    f"{_f(r['req_per_s'])} req/s, tree RSS peak {r['tree_rss_peak_mb']:.0f} MB")
                time.sleep(3.0)
            out[name] = rows
        finally:
            server.stop()
    return out


def _capacity_level(server, backend: str, clients: int) -> dict[str, Any]:
    results: list[Sample] = []
    lock = threading.Lock()
    barrier = threading.Barrier(clients + 1)

    def worker() -> None:
        with httpx.Client() as c:
            barrier.wait()
            s = ask(c, server.url, ROUTES["native"], backend, PROMPT)
            with lock:
                results.append(s)

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for t in threads:
        t.start()
    with procstat.RssSampler(server.process.pid) as rss:
        barrier.wait()
        t0 = time.monotonic()
        for t in threads:
            t.join()
        wall = time.monotonic() - t0
    ok = [s for s in results if s.error is None]
    rejected = sum(1 for s in results if s.error and s.error.startswith("HTTP 429"))
    return {"clients": clients, "ok": len(ok), "rejected": rejected,
            "other_errors": len(results) - len(ok) - rejected, "wall_s": wall,
            "req_per_s": len(ok) / wall if wall else None,
            "total_p50": p50([s.total for s in ok]), "total_p95": percentile(
                [s.total for s in ok], 95),
            "server_rss_peak_mb": rss.peak_own, "tree_rss_peak_mb": rss.peak_tree}


# -- mixed ------------------------------------------------------------------------------------


MIXED_SETUPS = {
    "pool and hot sessions off": ({}, {}),
    "pool on (1, max 4)": ({"warm_pool": 1, "warm_pool_max": 4}, {}),
    "hot sessions on (4)": ({}, {"hot_sessions_max": 4}),
    "pool and hot sessions on": ({"warm_pool": 1, "warm_pool_max": 4}, {"hot_sessions_max": 4}),
}


def mixed_phase(double: ModelDouble, scratch: Path, backend: str, *, one_shot_clients: int,
                one_shot_each: int, conversations: int, turns: int,
                setups: list[str] | None = None) -> dict[str, Any]:
    """One-shot requests (streamed, OpenAI route, back to back per client) and multi-turn
    conversations (streamed, native route, `session_id`, 1 s to read each answer) at once,
    against one server per setup: first text p50/p90 of each kind, 429s, errors, peak RSS
    of the server's whole process tree."""
    out: dict[str, Any] = {}
    for name in setups or list(MIXED_SETUPS):
        section, server_cfg = MIXED_SETUPS[name]
        server = start(double, scratch / f"mixed-{len(out)}",
                       backends={backend: section} if section else None, **server_cfg)
        client = httpx.Client()
        try:
            if section:
                wait_ready(client, server.url, backend, section["warm_pool"])
            time.sleep(2.0)  # let the first processes finish starting
            load = Load(server.process.pid)
            row = _mixed_run(server, backend, one_shot_clients, one_shot_each,
                             conversations, turns)
            row["pool"] = pool_state(client, server.url, backend)
            row["other_load_cores"] = load.other_cores()
            out[name] = row
            log(f"  {backend} {name}: one-shot p50/p90 {_f(row['one_shot']['first_p50'])}/"
                f"{_f(row['one_shot']['first_p90'])}, turn>=2 p50/p90 "
                f"{_f(row['later_turns']['first_p50'])}/{_f(row['later_turns']['first_p90'])}, "
                f"429s {row['rejected']}, tree RSS peak {row['tree_rss_peak_mb']:.0f} MB")
        finally:
            client.close()
            server.stop()
    return out


def _mixed_run(server, backend: str, one_shot_clients: int, one_shot_each: int,
               conversations: int, turns: int) -> dict[str, Any]:
    one_shot: list[Sample] = []
    first_turns: list[Sample] = []
    later: list[Sample] = []
    lock = threading.Lock()
    barrier = threading.Barrier(one_shot_clients + conversations + 1)

    def one_shot_client() -> None:
        with httpx.Client() as c:
            barrier.wait()
            for _ in range(one_shot_each):
                sample = ask_streaming(c, server.url, ROUTES["openai"], backend, PROMPT)
                with lock:
                    one_shot.append(sample)

    def conversation() -> None:
        with httpx.Client() as c:
            barrier.wait()
            session = _Turn1Route()
            sample = ask_streaming(c, server.url, session, backend, PROMPT)
            with lock:
                first_turns.append(sample)
            if session.session_id is None:
                return
            route = _SessionRoute(session.session_id)
            for _ in range(turns - 1):
                time.sleep(1.0)  # the user reads the answer
                sample = ask_streaming(c, server.url, route, backend, PROMPT)
                with lock:
                    later.append(sample)

    threads = [threading.Thread(target=one_shot_client) for _ in range(one_shot_clients)]
    threads += [threading.Thread(target=conversation) for _ in range(conversations)]
    for t in threads:
        t.start()
    with procstat.RssSampler(server.process.pid) as rss:
        barrier.wait()
        t0 = time.monotonic()
        for t in threads:
            t.join()
        wall = time.monotonic() - t0
    everything = one_shot + first_turns + later
    rejected = sum(1 for s in everything if s.error and s.error.startswith("HTTP 429"))
    return {
        "wall_s": wall,
        "one_shot": _kind(one_shot), "first_turns": _kind(first_turns),
        "later_turns": _kind(later),
        "rejected": rejected,
        "other_errors": sum(s.error is not None for s in everything) - rejected,
        "server_rss_peak_mb": rss.peak_own, "tree_rss_peak_mb": rss.peak_tree,
    }


def _kind(samples: list[Sample]) -> dict[str, Any]:
    values = firsts(samples)
    return {"n": len(samples), "errors": sum(s.error is not None for s in samples),
            "first_p50": p50(values), "first_p90": percentile(values, 90),
            "firsts": [round(v, 3) for v in values]}


class _Turn1Route(NativeRoute):
    """A conversation's first turn on the native route; remembers its session id."""

    def __init__(self) -> None:
        self.session_id: str | None = None

    def reader(self):
        texts = super().reader()

        def read(record: bytes) -> list[str]:
            if self.session_id is None and b'"session_id"' in record:
                try:
                    self.session_id = json.loads(record).get("session_id") or None
                except ValueError:
                    pass
            return texts(record)

        return read


def _f(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--phases", default="pool,turn2,mixed,capacity")
    ap.add_argument("--n", type=int, default=12, help="requests per pattern")
    ap.add_argument("--backends", default="claude,codex,gemini", help="for turn2")
    ap.add_argument("--levels", default="16,32")
    ap.add_argument("--mixed-backend", default="claude", help="for mixed")
    ap.add_argument("--one-shot-clients", type=int, default=4, help="mixed: one-shot clients")
    ap.add_argument("--one-shot-each", type=int, default=6, help="mixed: requests per client")
    ap.add_argument("--conversations", type=int, default=3, help="mixed: conversations")
    ap.add_argument("--turns", type=int, default=4, help="mixed: turns per conversation")
    ap.add_argument("--mixed-setups", default="",
                    help="mixed: comma-separated setup names (default: all four)")
    ap.add_argument("--pool-setups", default="",
                    help="pool: semicolon-separated setup names (default: all four)")
    ap.add_argument("--spare-priority", default="", choices=["", "low", "normal"],
                    help="pool: server.warm_pool_spare_priority (default: the server's)")
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "demand.json"))
    args = ap.parse_args(argv)
    phases = args.phases.split(",")
    results: dict[str, Any] = {
        "started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "loadavg_start": os.getloadavg(), "double": {"words": WORDS, "delay_ms": DELAY_MS},
    }
    scratch = Path(tempfile.mkdtemp(prefix="clinvk-demand-"))
    with ModelDouble(words=WORDS, delay_ms=DELAY_MS) as double:
        if "pool" in phases:
            log("pool: claude, streamed OpenAI requests")
            extra = ({"warm_pool_spare_priority": args.spare_priority}
                     if args.spare_priority else {})
            results["pool_config"] = extra
            results["pool"] = pool_phase(
                double, scratch, args.n, "claude",
                setups=args.pool_setups.split(";") if args.pool_setups else None, **extra)
        if "turn2" in phases:
            log("turn 2: hot vs cold")
            results["turn2"] = turn2_phase(double, scratch, max(4, args.n // 2),
                                           args.backends.split(","))
        if "mixed" in phases:
            log(f"mixed: one-shot requests and conversations at once ({args.mixed_backend})")
            results["mixed"] = mixed_phase(
                double, scratch, args.mixed_backend,
                one_shot_clients=args.one_shot_clients, one_shot_each=args.one_shot_each,
                conversations=args.conversations, turns=args.turns,
                setups=args.mixed_setups.split(",") if args.mixed_setups else None)
        if "capacity" in phases:
            log("capacity")
            results["capacity"] = capacity_phase(
                double, scratch, [int(x) for x in args.levels.split(",")], "claude")
    results["loadavg_end"] = os.getloadavg()
    Path(args.out).write_text(json.dumps(results, indent=1))
    print(json.dumps({k: v for k, v in results.items()}, indent=1)[:4000])
    return 0


if __name__ == "__main__":
    sys.exit(main())
