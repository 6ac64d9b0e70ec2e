"""The measuring phases against one running server: latency, throughput, warm pool."""

from __future__ import annotations

import resource
import statistics
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench import procstat
from bench.clients import (
    ROUTES,
    Sample,
    ask,
    ask_streaming,
    cli_env,
    direct_argv,
    run_direct,
)
from bench.stats import summarize
from clinvk.adapters.backends.base import BASE_ENV
from clinvk.adapters.backends.runner import default_backends
from tests.support.clis import backend_settings
from tests.support.model_double import ModelDouble, generation_requests
from tests.support.server import ClinvkServer

PROMPT = "Say the twenty words."
WORDS, DELAY_MS = 20, 50
#: Backends whose CLI can read its prompt after start, so clinvk can keep it warm.
POOLABLE = ("claude", "codex")


@dataclass(frozen=True)
class Plan:
    """How many samples each phase takes."""

    runs: int  # latency rounds; each: direct runs + 3 routes x (plain + streamed)
    direct_per_round: int  # 2 = one before the plain and one before the streamed requests
    warm_up_routes: tuple[str, ...]  # routes asked once before measuring, with one direct run
    per_client: int  # throughput: requests each concurrent client sends
    min_requests: int  # throughput: at least this many requests per level (1 client: more)
    levels: tuple[int, ...]  # throughput: concurrent clients
    null_runs: int  # latency rounds with the null CLI (clinvk's own overhead)
    warm_runs: int  # warm pool rounds
    warm_routes: tuple[str, ...]
    warm_backends: tuple[str, ...]  # of those that can be pooled (claude, codex)
    settle: float  # seconds a refilled pooled process gets to finish starting
    quiet: float  # seconds of quiet before reading the idle RSS


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- accounting ------------------------------------------------------------------------------


class Load:
    """CPU used on the machine by processes other than this bench (and what it started)."""

    def __init__(self, server_pid: int) -> None:
        self.server_pid = server_pid
        self.t0 = time.monotonic()
        self.busy0, _ = procstat.machine_busy()
        self.ours0 = self._ours()

    def _ours(self) -> float:
        own = resource.getrusage(resource.RUSAGE_SELF)
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)  # direct CLI runs
        server = procstat.cpu(self.server_pid)  # not reaped yet: read it live
        return (own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime
                + server.own + server.children)

    def other_cores(self) -> float:
        """Average cores busy with foreign work since construction."""
        busy, _ = procstat.machine_busy()
        foreign = (busy - self.busy0) / procstat.TICK - (self._ours() - self.ours0)
        return max(0.0, foreign / max(1e-9, time.monotonic() - self.t0))


def with_server_cpu(pid: int, call) -> tuple[Sample, procstat.Cpu]:
    """Run `call` and return its sample with the server's CPU seconds it took."""
    before = procstat.cpu(pid)
    sample = call()
    return sample, procstat.cpu(pid) - before


def per_request_ms(cpus: list[procstat.Cpu]) -> dict[str, float | None]:
    """Mean server and CLI CPU milliseconds per request."""
    if not cpus:
        return {"server_cpu_ms": None, "cli_cpu_ms": None}
    return {"server_cpu_ms": 1000 * sum(c.own for c in cpus) / len(cpus),
            "cli_cpu_ms": 1000 * sum(c.children for c in cpus) / len(cpus)}


# -- phases ----------------------------------------------------------------------------------


class Bench:
    """The measurements, against one running server and the double it uses."""

    def __init__(self, plan: Plan, server: ClinvkServer, double: ModelDouble,
                 commands: dict[str, Path] | None = None) -> None:
        self.plan = plan
        self.commands = commands or {}  # backend -> null CLI the server runs instead
        self.transcripts: dict[str, bytes] = {}
        self.server = server
        self.pid = server.process.pid
        self.double = double
        self.client = httpx.Client()
        self.settings = backend_settings(double.url, server.scratch / "clis")
        self.prefixes = {b.name: b.env_prefixes for b in default_backends().values()}

    def direct(self, backend: str) -> Sample:
        """One run of the bare CLI (or of the null CLI standing in for it)."""
        s = self.settings[backend]
        env = cli_env(s, self.prefixes[backend], BASE_ENV)
        null = self.commands.get(backend)
        argv = [str(null)] if null else direct_argv(backend, s, PROMPT)
        return run_direct(backend, argv, env, str(self.server.workdir))

    def route(self, backend: str, route: str, stream: bool) -> tuple[Sample, procstat.Cpu]:
        """One request through clinvk, with the server's CPU it cost."""
        call = ask_streaming if stream else ask
        return with_server_cpu(
            self.pid, lambda: call(self.client, self.server.url, ROUTES[route], backend, PROMPT)
        )

    def with_model_call(self, call, *args):
        """Run `call(*args)` (one sequential run); note when the double got its model call."""
        start = time.time()  # the double stamps its log with time.time()
        result = call(*args)
        sample = result[0] if isinstance(result, tuple) else result
        calls = [r["ts"] for r in generation_requests(self.double.requests()) if r["ts"] >= start]
        if calls:
            sample.model_call = min(calls) - start
        return result

    def warm_up(self, backend: str) -> None:
        """First runs create the CLI's state in its fresh home: keep them out of the figures."""
        first = self.direct(backend)
        if first.error is None:
            self.transcripts[backend] = first.stdout
        routes = self.plan.warm_up_routes
        for sample in [first] + [self.route(backend, r, False)[0] for r in routes]:
            if sample.error:
                log(f"  warm-up error ({backend}): {sample.error}")

    def latency(self, backend: str, rounds: int | None = None) -> dict[str, Any]:
        """Sequential runs, the variants interleaved (rotated each round) so drift in the
        machine's load hits all of them alike."""
        rounds = rounds or self.plan.runs
        self.double.clear_log()  # keeps the log (and the look-ups in it) small
        direct: list[Sample] = []
        plain: dict[str, list[Sample]] = {r: [] for r in ROUTES}
        streamed: dict[str, list[Sample]] = {r: [] for r in ROUTES}
        cpus: dict[str, list[procstat.Cpu]] = {r: [] for r in ROUTES}
        # The direct run just before each batch, to pair with it (drift cancels out).
        pairs: dict[bool, list[Sample]] = {False: [], True: []}
        names = list(ROUTES)
        for i in range(rounds):
            order = names[i % 3:] + names[:i % 3]
            for stream, bucket in ((False, plain), (True, streamed)):
                if stream is False or self.plan.direct_per_round > 1:
                    direct.append(self.with_model_call(self.direct, backend))
                pairs[stream].append(direct[-1])
                for r in order:
                    sample, cpu = self.with_model_call(self.route, backend, r, stream)
                    bucket[r].append(sample)
                    cpus[r].append(cpu)
            if (i + 1) % max(1, rounds // 6) == 0 or i + 1 == rounds:
                log(f"  latency round {i + 1}/{rounds}: direct "
                    f"{direct[-1].total:.3f}s, native {plain['native'][-1].total:.3f}s")
        cli_cpu = [s.cli_cpu for s in direct if s.cli_cpu is not None and s.error is None]
        out: dict[str, Any] = {"direct": {**summarize(direct), "server_cpu_ms": None,
                                          "cli_cpu_ms": 1000 * sum(cli_cpu) / len(cli_cpu)
                                          if cli_cpu else None}}
        for r in ROUTES:
            out[r] = {"plain": summarize(plain[r]), "stream": summarize(streamed[r]),
                      **per_request_ms(cpus[r]),
                      "paired_ratio_median": paired(plain[r], pairs[False], "total", ratio=True),
                      "paired_first_text_delta_ms_median":
                          paired(streamed[r], pairs[True], "first_text", ratio=False)}
        return out

    def throughput(self, backend: str) -> dict[str, Any]:
        """Requests/s with C clients each sending requests back to back: batches in the
        order direct, clinvk, clinvk, direct (ABBA), so a drift in load favours neither."""
        out: dict[str, Any] = {}
        for level in self.plan.levels:
            each = max(self.plan.per_client, -(-self.plan.min_requests // level))
            halves = [each // 2, each - each // 2] if each > 1 else [each]
            direct, served = Batch(), Batch()
            with procstat.RssSampler(self.pid) as rss:
                for i, per_client in enumerate(halves):
                    order = (direct, served) if i % 2 == 0 else (served, direct)
                    for batch in order:
                        if batch is direct:
                            batch.run(level, per_client, lambda _c: self.direct(backend))
                        else:
                            batch.run(level, per_client, self.ask_native(backend), self.pid)
            n = len(direct.samples)
            out[str(level)] = {
                "requests": n,
                "direct": {**direct.summary(), "cli_cpu_ms": 1000 * direct.children_cpu / n},
                "native": {**served.summary(), "server_cpu_ms": 1000 * served.server.own / n,
                           "cli_cpu_ms": 1000 * served.server.children / n,
                           "server_rss_peak_mb": rss.peak_own,
                           "tree_rss_peak_mb": rss.peak_tree},
            }
            errors = [s.error for s in direct.samples + served.samples if s.error]
            log(f"  {level} clients: direct {direct.summary()['rps']:.2f} req/s, clinvk "
                f"{served.summary()['rps']:.2f} req/s"
                + (f", errors: {errors[:2]}" if errors else ""))
        return out

    def ask_native(self, backend: str):
        """A client call for `Batch.run`: one non-streamed request on the native route."""
        def one(client: httpx.Client) -> Sample:
            return ask(client, self.server.url, ROUTES["native"], backend, PROMPT)
        return one

    def warm(self, backend: str) -> dict[str, Any]:
        """First streamed text from a pooled process vs the bare CLI started cold."""
        cold: list[Sample] = []
        warm: dict[str, list[Sample]] = {r: [] for r in self.plan.warm_routes}
        hits: dict[str, int] = {r: 0 for r in self.plan.warm_routes}
        command = self.settings[backend]["command"]
        for i in range(self.plan.warm_runs):
            cold.append(self.direct(backend))
            for r in self.plan.warm_routes:
                self.wait_pool(backend)
                time.sleep(self.plan.settle)
                waiting = self.cli_children(command)
                warm[r].append(ask_streaming(self.client, self.server.url, ROUTES[r], backend,
                                             PROMPT))
                hits[r] += bool(waiting - self.cli_children(command))  # it was used up
            first_route = warm[self.plan.warm_routes[0]][-1]
            log(f"  warm round {i + 1}/{self.plan.warm_runs}: cold first text "
                f"{_fmt(cold[-1].first_text)}, warm {_fmt(first_route.first_text)}")
        return {"direct_cold": summarize(cold),
                **{r: {**summarize(warm[r]), "pool_hits": hits[r]} for r in warm}}

    def pool_state(self, backend: str) -> dict[str, int] | None:
        health = self.client.get(self.server.url + "/health", timeout=10).json()
        entry = next((b for b in health["backends"] if b["name"] == backend), {})
        return entry.get("warm_pool")

    def wait_pool(self, backend: str, seconds: float = 30) -> None:
        deadline = time.monotonic() + seconds
        while (self.pool_state(backend) or {}).get("ready", 0) < 1:
            if time.monotonic() > deadline:
                log(f"  {backend}: the pool did not refill in {seconds}s")
                return
            time.sleep(0.05)

    def cli_children(self, command: str) -> set[int]:
        """Pids of the server's direct children running `command` (waiting pool processes)."""
        found = set()
        for pid in procstat.descendants(self.pid):
            try:
                with open(f"/proc/{pid}/stat", "rb") as f:
                    ppid = int(f.read().rsplit(b") ", 1)[1].split()[1])
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    cmdline = f.read()
            except OSError:
                continue
            if ppid == self.pid and command.encode() in cmdline:
                found.add(pid)
        return found

    def idle_rss(self) -> dict[str, float]:
        """VmRSS of the server and of its whole tree, after a moment of quiet."""
        time.sleep(self.plan.quiet)
        return {"server_mb": procstat.rss_mb(self.pid), "tree_mb": procstat.tree_rss_mb(self.pid)}


def paired(samples: list[Sample], bases: list[Sample], attr: str, *, ratio: bool) -> float | None:
    """Median over rounds of sample/base (ratio) or sample - base in ms, good pairs only."""
    values = []
    for s, b in zip(samples, bases):
        x, y = getattr(s, attr), getattr(b, attr)
        if s.error is None and b.error is None and x is not None and y:
            values.append(x / y if ratio else (x - y) * 1000)
    return statistics.median(values) if values else None


class Batch:
    """Concurrent requests of one variant, accumulated over several batches."""

    def __init__(self) -> None:
        self.samples: list[Sample] = []
        self.wall = 0.0
        self.children_cpu = 0.0  # direct runs: CPU of the CLIs (RUSAGE_CHILDREN)
        self.server = procstat.Cpu(own=0.0, children=0.0)  # clinvk: the server's CPU

    def run(self, clients: int, each: int, call, server_pid: int | None = None) -> None:
        kids0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu0 = procstat.cpu(server_pid) if server_pid else None
        samples, wall = _in_threads(clients, each, call, http=server_pid is not None)
        self.samples += samples
        self.wall += wall
        kids1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.children_cpu += (kids1.ru_utime + kids1.ru_stime) - (kids0.ru_utime + kids0.ru_stime)
        if server_pid:
            self.server += procstat.cpu(server_pid) - cpu0

    def summary(self) -> dict[str, Any]:
        summary = summarize(self.samples)
        return {"rps": len(self.samples) / self.wall, "wall": self.wall,
                "errors": summary["error_count"], "p50": summary["total_p50"],
                "p95": summary["total_p95"]}


def _in_threads(clients: int, each: int, call, http: bool = False) -> tuple[list[Sample], float]:
    """`clients` threads each making `each` calls back to back; returns the samples and the
    wall time from the common start to the last answer. Threads and HTTP clients are made
    before the clock starts (an httpx.Client takes tens of ms to build)."""
    results: list[Sample] = []
    lock = threading.Lock()
    go = threading.Event()
    pool = [httpx.Client() if http else None for _ in range(clients)]

    def worker(client: httpx.Client | None) -> None:
        go.wait()
        for _ in range(each):
            sample = call(client)
            with lock:
                results.append(sample)

    threads = [threading.Thread(target=worker, args=(c,)) for c in pool]
    for t in threads:
        t.start()
    t0 = time.perf_counter()
    go.set()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    for client in pool:
        if client is not None:
            client.close()
    return results, wall


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}s"
