"""Benchmark: the bare CLIs against the same work through `clinvk serve` (issue 7).

    .venv/bin/python bench/run.py [--quick] [--backends claude,codex,gemini] [--runs N]

Starts the model-API double (20 words, 50 ms before each) and a real `clinvk serve`, then
per backend measures side by side the CLI run directly (the floor) and the native, OpenAI
and Anthropic routes: latency, streamed text, throughput, memory, CPU. Then the same
routes with a null CLI (a recorded stdout replayed at once: clinvk's own overhead, free of
the CLI's start-up noise), and a server with `warm_pool: 1` for the first streamed text of
pooled claude/codex processes. Prints markdown tables; writes JSON to
bench/results/latest.json (or --out). docs/benchmarks.md explains every figure.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # `python bench/run.py` puts only bench/ on the path
    sys.path.insert(0, str(REPO))

import httpx  # noqa: E402
import yaml  # noqa: E402

from bench import procstat  # noqa: E402
from bench.clients import (  # noqa: E402
    ROUTES,
    Sample,
    ask,
    ask_streaming,
    cli_env,
    direct_argv,
    run_direct,
    write_null_cli,
)
from bench.report import markdown, verdicts  # noqa: E402
from bench.stats import summarize  # noqa: E402
from clinvk.adapters.backends.base import BASE_ENV  # noqa: E402
from clinvk.adapters.backends.runner import default_backends  # noqa: E402
from tests.support.clis import CLI_NAMES, backend_settings, missing_clis  # noqa: E402
from tests.support.model_double import ModelDouble  # noqa: E402
from tests.support.server import ClinvkServer  # noqa: E402

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
    settle: float  # seconds a refilled pooled process gets to finish starting


FULL = Plan(runs=6, direct_per_round=2, warm_up_routes=("native", "openai", "anthropic"),
            per_client=2, min_requests=4, levels=(1, 4, 8), null_runs=40, warm_runs=6,
            warm_routes=("native", "openai", "anthropic"), settle=1.5)
QUICK = Plan(runs=2, direct_per_round=1, warm_up_routes=("native",), per_client=1,
             min_requests=1, levels=(1, 4, 8), null_runs=10, warm_runs=2,
             warm_routes=("native",), settle=1.0)


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
    before = procstat.cpu(pid)
    sample = call()
    return sample, procstat.cpu(pid) - before


def per_request_ms(cpus: list[procstat.Cpu]) -> dict[str, float | None]:
    if not cpus:
        return {"server_cpu_ms": None, "cli_cpu_ms": None}
    return {"server_cpu_ms": 1000 * sum(c.own for c in cpus) / len(cpus),
            "cli_cpu_ms": 1000 * sum(c.children for c in cpus) / len(cpus)}


# -- phases ----------------------------------------------------------------------------------


class Bench:
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
        s = self.settings[backend]
        env = cli_env(s, self.prefixes[backend], BASE_ENV)
        null = self.commands.get(backend)
        argv = [str(null)] if null else direct_argv(backend, s, PROMPT)
        return run_direct(backend, argv, env, str(self.server.workdir))

    def route(self, backend: str, route: str, stream: bool) -> tuple[Sample, procstat.Cpu]:
        call = ask_streaming if stream else ask
        return with_server_cpu(
            self.pid, lambda: call(self.client, self.server.url, ROUTES[route], backend, PROMPT)
        )

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
                    direct.append(self.direct(backend))
                pairs[stream].append(direct[-1])
                for r in order:
                    sample, cpu = self.route(backend, r, stream)
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
        """Requests/s with C clients each sending `per_client` requests back to back."""
        out: dict[str, Any] = {}
        for level in self.plan.levels:
            each = max(self.plan.per_client, -(-self.plan.min_requests // level))
            n = level * each
            kids0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            t0 = time.perf_counter()
            direct = _in_threads(level, each, lambda _c: self.direct(backend))
            direct_wall = time.perf_counter() - t0
            kids1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            direct_cpu = (kids1.ru_utime + kids1.ru_stime) - (kids0.ru_utime + kids0.ru_stime)

            def one(client: httpx.Client) -> Sample:
                return ask(client, self.server.url, ROUTES["native"], backend, PROMPT)

            cpu0 = procstat.cpu(self.pid)
            with procstat.RssSampler(self.pid) as rss:
                t0 = time.perf_counter()
                served = _in_threads(level, each, one, http=True)
                served_wall = time.perf_counter() - t0
            cpu = procstat.cpu(self.pid) - cpu0
            out[str(level)] = {
                "requests": n,
                "direct": {"rps": n / direct_wall, "wall": direct_wall,
                           "errors": sum(s.error is not None for s in direct),
                           "p50": summarize(direct)["total_p50"],
                           "cli_cpu_ms": 1000 * direct_cpu / n},
                "native": {"rps": n / served_wall, "wall": served_wall,
                           "errors": sum(s.error is not None for s in served),
                           "p50": summarize(served)["total_p50"],
                           "server_cpu_ms": 1000 * cpu.own / n,
                           "cli_cpu_ms": 1000 * cpu.children / n,
                           "server_rss_peak_mb": rss.peak_own,
                           "tree_rss_peak_mb": rss.peak_tree},
            }
            errors = [s.error for s in direct + served if s.error]
            log(f"  {level} clients: direct {n / direct_wall:.2f} req/s, clinvk "
                f"{n / served_wall:.2f} req/s" + (f", errors: {errors[:2]}" if errors else ""))
        return out

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
            log(f"  warm round {i + 1}/{self.plan.warm_runs}: cold first text "
                f"{_fmt(cold[-1].first_text)}, warm native {_fmt(warm[self.plan.warm_routes[0]][-1].first_text)}")
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
        time.sleep(2)
        return {"server_mb": procstat.rss_mb(self.pid), "tree_mb": procstat.tree_rss_mb(self.pid)}


def paired(samples: list[Sample], bases: list[Sample], attr: str, *, ratio: bool) -> float | None:
    """Median over rounds of sample/base (ratio) or sample - base in ms, good pairs only."""
    values = []
    for s, b in zip(samples, bases):
        x, y = getattr(s, attr), getattr(b, attr)
        if s.error is None and b.error is None and x is not None and y:
            values.append(x / y if ratio else (x - y) * 1000)
    return statistics.median(values) if values else None


def _in_threads(clients: int, each: int, call, http: bool = False) -> list[Sample]:
    results: list[Sample] = []
    lock = threading.Lock()

    def worker() -> None:
        client = httpx.Client() if http else None
        try:
            for _ in range(each):
                sample = call(client)
                with lock:
                    results.append(sample)
        finally:
            if client is not None:
                client.close()

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}s"


# -- the run -----------------------------------------------------------------------------------


def start_server(double: ModelDouble, scratch: Path, warm: tuple[str, ...] = (),
                 commands: dict[str, Path] | None = None) -> ClinvkServer:
    """A real `clinvk serve` on the double; `warm` backends get `warm_pool: 1`, `commands`
    replace a backend's CLI (the null CLI)."""
    server = ClinvkServer(double.url, scratch, request_timeout_secs=180, heartbeat_secs=15)
    config = yaml.safe_load(server.config_path.read_text())
    for name in warm:
        config["backends"][name]["warm_pool"] = 1
    for name, command in (commands or {}).items():
        config["backends"][name]["command"] = str(command)
    server.config_path.write_text(yaml.safe_dump(config))
    return server.start()


def machine() -> dict[str, Any]:
    model = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem = int(f.readline().split()[1]) // 1024
    return {"cpus": os.cpu_count(), "cpu_model": model, "mem_mb": mem,
            "kernel": platform.release(), "python": platform.python_version()}


def revision() -> dict[str, Any]:
    """The commit measured, and whether the working tree differed from it."""
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True,
                                  timeout=10).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return ""
    return {"commit": git("rev-parse", "HEAD"),
            "dirty": bool(git("status", "--porcelain", "--untracked-files=no", "src"))}


def cli_versions(settings: dict[str, dict], backends: list[str]) -> dict[str, str]:
    out = {}
    for name in backends:
        try:
            done = subprocess.run([settings[name]["command"], "--version"], capture_output=True,
                                  text=True, timeout=30, env={**os.environ, **settings[name]["env"]})
            out[name] = done.stdout.strip().splitlines()[0] if done.stdout.strip() else "?"
        except (OSError, subprocess.TimeoutExpired):
            out[name] = "?"
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer samples (about 2 minutes)")
    ap.add_argument("--backends", default=",".join(CLI_NAMES),
                    help="comma-separated subset of claude,codex,gemini")
    ap.add_argument("--runs", type=int, default=None,
                    help="latency rounds per backend (default: 6, --quick: 2)")
    ap.add_argument("--no-warm", action="store_true", help="skip the warm pool phase")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "latest.json")
    args = ap.parse_args(argv)
    plan = QUICK if args.quick else FULL
    if args.runs:
        plan = Plan(**{**plan.__dict__, "runs": args.runs, "warm_runs": max(args.runs, 2)})
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = set(backends) - set(CLI_NAMES)
    missing = set(backends) & set(missing_clis())
    if unknown or missing:
        ap.error(f"unknown backends {sorted(unknown)}; not installed {sorted(missing)} "
                 "(run scripts/install-clis.sh)")

    started = time.monotonic()
    results: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(), "revision": revision(), "plan": plan.__dict__,
        "double": {"words": WORDS, "delay_ms": DELAY_MS}, "prompt": PROMPT,
        "loadavg_start": os.getloadavg(), "backends": {}, "null_cli": {}, "warm_pool": {},
    }
    scratch = Path(tempfile.mkdtemp(prefix="clinvk-bench-"))
    log(f"scratch: {scratch}; plan: {plan}")
    with ModelDouble(words=WORDS, delay_ms=DELAY_MS) as double:
        results["cli_versions"] = cli_versions(backend_settings(double.url, scratch / "v"),
                                               backends)
        server = start_server(double, scratch / "cold")
        try:
            bench = Bench(plan, server, double)
            results["server_rss_idle_start"] = bench.idle_rss()
            for backend in backends:
                log(f"{backend}: warm-up, latency, throughput")
                load = Load(bench.pid)
                bench.warm_up(backend)
                results["backends"][backend] = {
                    "latency": bench.latency(backend),
                    "throughput": bench.throughput(backend),
                    "other_load_cores": load.other_cores(),
                }
            results["server_rss_idle_after"] = bench.idle_rss()
            transcripts = bench.transcripts
        finally:
            server.stop()
        if transcripts:
            nulls = {b: write_null_cli(scratch / f"null-{b}", t) for b, t in transcripts.items()}
            server = start_server(double, scratch / "null", commands=nulls)
            try:
                bench = Bench(plan, server, double, commands=nulls)
                for backend in nulls:
                    log(f"{backend}: clinvk overhead with the null CLI")
                    bench.warm_up(backend)
                    results["null_cli"][backend] = bench.latency(backend, plan.null_runs)
            finally:
                server.stop()
        pooled = tuple(b for b in backends if b in POOLABLE)
        if pooled and not args.no_warm:
            server = start_server(double, scratch / "warm", warm=pooled)
            try:
                bench = Bench(plan, server, double)
                for backend in pooled:
                    bench.wait_pool(backend)
                results["warm_server_rss_idle"] = bench.idle_rss()
                for backend in pooled:
                    log(f"{backend}: warm pool")
                    load = Load(bench.pid)
                    bench.warm_up(backend)
                    results["warm_pool"][backend] = {**bench.warm(backend),
                                                     "other_load_cores": load.other_cores()}
            finally:
                server.stop()
    results["loadavg_end"] = os.getloadavg()
    results["wall_secs"] = time.monotonic() - started
    results["verdicts"] = verdicts(results)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(markdown(results))
    log(f"done in {results['wall_secs']:.0f}s; JSON: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
