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
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # `python bench/run.py` puts only bench/ on the path
    sys.path.insert(0, str(REPO))

import yaml

from bench.clients import write_null_cli
from bench.phases import DELAY_MS, POOLABLE, PROMPT, WORDS, Bench, Load, Plan, log
from bench.report import markdown, verdicts
from tests.support.clis import CLI_NAMES, backend_settings, missing_clis
from tests.support.model_double import ModelDouble
from tests.support.server import ClinvkServer

FULL = Plan(runs=6, direct_per_round=2, warm_up_routes=("native", "openai", "anthropic"),
            per_client=2, min_requests=4, levels=(1, 4, 8), null_runs=40, warm_runs=6,
            warm_routes=("native", "openai", "anthropic"), warm_backends=POOLABLE,
            settle=1.5, quiet=2.0)
QUICK = Plan(runs=2, direct_per_round=1, warm_up_routes=("native",), per_client=1,
             min_requests=1, levels=(1, 4, 8), null_runs=10, warm_runs=2,
             warm_routes=("native",), warm_backends=("claude",), settle=1.0, quiet=1.0)


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
                                  timeout=10, check=False).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return ""
    return {"commit": git("rev-parse", "HEAD"),
            "dirty": bool(git("status", "--porcelain", "--untracked-files=no", "src"))}


def cli_versions(settings: dict[str, dict], backends: list[str]) -> dict[str, str]:
    out = {}
    for name in backends:
        try:
            done = subprocess.run([settings[name]["command"], "--version"], capture_output=True,
                                  text=True, timeout=30, check=False,
                                  env={**os.environ, **settings[name]["env"]})
            out[name] = done.stdout.strip().splitlines()[0] if done.stdout.strip() else "?"
        except (OSError, subprocess.TimeoutExpired):
            out[name] = "?"
    return out


def measure(plan: Plan, backends: list[str], scratch: Path, results: dict[str, Any], *,
            warm: bool) -> None:
    """All phases, each against its own server; figures go into `results`."""
    transcripts: dict[str, bytes] = {}
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
        pooled = tuple(b for b in backends if b in plan.warm_backends)
        if pooled and warm:
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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="fewer samples (about 2 minutes; not enough for verdicts)")
    ap.add_argument("--backends", default=",".join(CLI_NAMES),
                    help="comma-separated subset of claude,codex,gemini")
    ap.add_argument("--runs", type=int, default=None,
                    help="latency rounds per backend (default: 6, --quick: 2)")
    ap.add_argument("--no-warm", action="store_true", help="skip the warm pool phase")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "latest.json")
    ap.add_argument("--keep", action="store_true",
                    help="keep the scratch folder (CLI homes, server logs) for a look")
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
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": machine(), "revision": revision(), "plan": plan.__dict__,
        "double": {"words": WORDS, "delay_ms": DELAY_MS}, "prompt": PROMPT,
        "loadavg_start": os.getloadavg(), "backends": {}, "null_cli": {}, "warm_pool": {},
    }
    scratch = Path(tempfile.mkdtemp(prefix="clinvk-bench-"))
    log(f"scratch: {scratch}; plan: {plan}")
    try:
        measure(plan, backends, scratch, results, warm=not args.no_warm)
    finally:
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)
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
