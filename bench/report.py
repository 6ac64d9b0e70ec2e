"""The verdict on each target of issue 7, and the markdown tables printed after a run."""

from __future__ import annotations

import math
from typing import Any

ROUTES = ("native", "openai", "anthropic")
NONSTREAM_RATIO = 1.02
FIRST_TEXT_SLACK = 0.020
CPU_SHARE = 0.05
IDLE_RSS_MB = 80
WARM_FIRST_TEXT = 0.15


def _noise(a: dict[str, Any], b: dict[str, Any], sd: str) -> float | None:
    """Standard error of the difference of two medians (1.25 x that of the means)."""
    na, nb = a["n"] - a["error_count"], b["n"] - b["error_count"]
    if not (na and nb) or a.get(sd) is None or b.get(sd) is None:
        return None
    return 1.25 * math.sqrt(a[sd] ** 2 / na + b[sd] ** 2 / nb)


def _judge(excess: float | None, noise: float | None, null_ok: bool | None) -> str:
    """met; met within noise (over the limit by less than 2 standard errors while clinvk's
    own overhead, measured with the null CLI, is within it); or NOT met."""
    if excess is None:
        return "n/a"
    if excess <= 0:
        return "met"
    if null_ok and noise is not None and excess <= 2 * noise:
        return "met within noise"
    return "NOT met"


def verdicts(r: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per target and backend/route: what was measured, the limit, the verdict."""
    rows: list[dict[str, Any]] = []

    def add(target: str, where: str, measured: str, limit: str, evidence: str,
            verdict: str) -> None:
        rows.append({"target": target, "where": where, "measured": measured, "limit": limit,
                     "evidence": evidence, "verdict": verdict})

    for backend, data in r["backends"].items():
        lat, null = data["latency"], r.get("null_cli", {}).get(backend)
        d0 = lat["direct"]
        for route in ROUTES:
            d, where = lat[route], f"{backend}/{route}"
            ns, st = d["plain"], d["stream"]
            # Non-stream p50 within 2 % of the bare CLI.
            delta, base = _minus(ns["total_p50"], d0["total_p50"]), d0["total_p50"]
            null_extra = _minus(null[route]["plain"]["total_p50"], null["direct"]["total_p50"]) \
                if null else None
            if delta is not None and base:
                noise = _noise(ns, d0, "total_sd")
                null_ratio = None if null_extra is None else 1 + null_extra / base
                add("non-stream p50 <= 1.02 x direct", where, f"{1 + delta / base:.3f} x", "1.02 x",
                    f"null CLI {_fmt_ms(null_extra)} (= {_fmt(null_ratio, 3)} x); "
                    f"noise ±{_fmt(None if noise is None else noise * 1000, 1)} ms",
                    _judge(delta - (NONSTREAM_RATIO - 1) * base, noise,
                           None if null_ratio is None else null_ratio <= NONSTREAM_RATIO))
            # First streamed text within 20 ms of the bare CLI's.
            delta = _minus(st["first_text_p50"], d0["first_text_p50"])
            relay = _minus(st["after_model_p50"], d0["after_model_p50"])
            null_first = _minus(null[route]["stream"]["first_text_p50"],
                                null["direct"]["first_text_p50"]) if null else None
            noise = _noise(st, d0, "first_text_sd")
            add("first text <= direct + 20 ms", where, _fmt_ms(delta), "+20 ms",
                f"null CLI {_fmt_ms(null_first)}; after the model call {_fmt_ms(relay)}; "
                f"noise ±{_fmt(None if noise is None else noise * 1000, 1)} ms",
                _judge(None if delta is None else delta - FIRST_TEXT_SLACK, noise,
                       None if null_first is None else null_first <= FIRST_TEXT_SLACK))
            # Every text delta the CLI printed reached the client in its own chunk.
            good = st["n"] - st["error_count"]
            emitted = d0["text_events_median"]
            chunked = (good > 0 and st["own_chunk_runs"] == good
                       and st["text_events_min"] is not None and emitted is not None
                       and st["text_events_min"] >= emitted)
            add("every text delta its own chunk", where,
                f"{st['text_events_min']} events, {st['text_chunks_min']} chunks (min)",
                f"{_fmt(emitted, 0)} (CLI)",
                f"{st['own_chunk_runs']}/{good} runs one chunk per delta; "
                f"smallest gap {_fmt(st['min_gap_ms'], 0)} ms",
                "n/a" if not good else ("met" if chunked else "NOT met"))
            # Server CPU per request within 5 % of the CLI's.
            cpu, cli = d["server_cpu_ms"], d0["cli_cpu_ms"]
            share = cpu / cli if cpu is not None and cli else None
            null_cpu = null[route]["server_cpu_ms"] if null else None
            add("server CPU/request <= 5 % of the CLI's", where,
                "-" if share is None else f"{share * 100:.1f} %", "5 %",
                f"server {_fmt(cpu, 1)} ms, CLI {_fmt(cli, 0)} ms; "
                f"null CLI server {_fmt(null_cpu, 1)} ms",
                "n/a" if share is None else ("met" if share <= CPU_SHARE else "NOT met"))
    for key in ("server_rss_idle_start", "server_rss_idle_after"):
        if key in r:
            mb = r[key]["server_mb"]
            add("idle RSS <= 80 MB", key.replace("server_rss_", ""), f"{mb:.1f} MB", "80 MB",
                "VmRSS of the server process", "met" if mb <= IDLE_RSS_MB else "NOT met")
    for backend, data in r.get("warm_pool", {}).items():
        w = data.get("native", {})
        first = w.get("first_text_p50")
        add("warm pool first text p50 <= 0.15 s" + ("" if backend == "claude" else " (info)"),
            f"{backend}/native", f"{_fmt(first, 3)} s", "0.15 s",
            f"bare CLI cold {_fmt(data['direct_cold']['first_text_p50'], 3)} s; "
            f"pool hits {w.get('pool_hits')}/{w.get('n')}",
            "n/a" if first is None else ("met" if first <= WARM_FIRST_TEXT else "NOT met"))
    return rows


def _fmt(v: float | None, digits: int) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def _fmt_ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:+.1f} ms"


def _minus(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def _s(v: float | None, digits: int = 3) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def _ms(v: float | None, digits: int = 0) -> str:
    return "-" if v is None else f"{v * 1000:.{digits}f}"


def markdown(r: dict[str, Any]) -> str:
    """Tables of the headline figures; every number is also in the JSON."""
    m, rev = r["machine"], r.get("revision", {})
    setting = (
        f"{m['cpus']} vCPU ({m['cpu_model']}), {m['mem_mb']} MB RAM, Python {m['python']}; "
        f"double: {r['double']['words']} words, {r['double']['delay_ms']} ms before each; "
        f"CLIs: {', '.join(f'{k} {v}' for k, v in r.get('cli_versions', {}).items())}; "
        f"load average start {r['loadavg_start'][0]:.2f}, end {r['loadavg_end'][0]:.2f}; "
        f"wall {r['wall_secs']:.0f} s; commit {rev.get('commit', '?')[:10]}"
        f"{' + uncommitted changes in src/' if rev.get('dirty') else ''}."
    )
    out = [f"# clinvk benchmark {r['date']}", "", setting, ""]

    out += ["## Latency (sequential requests)", "",
            ("Seconds from spawn / request to the end (p50, p95: non-stream) or to the first "
             "and last text (streamed); ratio and Δ against the bare CLI. First text = model "
             "call (when the double got the CLI's model request: spawn and CLI start-up) + "
             "after model (the double's 50 ms, the CLI's parsing, clinvk's relay). Text: "
             "pieces the client received as events / separate body chunks (median), of 20 the "
             "double sent. CPU: ms per request of the server process, and of the CLI it ran. "
             "Other load: cores busy with work not of this bench (other users of the "
             "machine)."), "",
            ("| backend | variant | p50 | p95 | ratio | first text | Δ first (ms) | model call "
             "| after model | last text | text events/chunks | server CPU ms | CLI CPU ms "
             "| server/CLI CPU | other load |"),
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for backend, data in r["backends"].items():
        lat = data["latency"]
        d0 = lat["direct"]
        out.append(f"| {backend} | direct CLI | {_s(d0['total_p50'])} | {_s(d0['total_p95'])} "
                   f"| 1.000 | {_s(d0['first_text_p50'])} | 0 | {_s(d0['model_call_p50'])} "
                   f"| {_s(d0['after_model_p50'])} | {_s(d0['last_text_p50'])} "
                   f"| {_s(d0['text_events_median'], 0)}/{_s(d0['text_chunks_median'], 0)} "
                   f"| - | {_s(d0['cli_cpu_ms'], 0)} | - | {data['other_load_cores']:.2f} cores |")
        for route in ROUTES:
            d = lat[route]
            ns, st = d["plain"], d["stream"]
            ratio = (ns["total_p50"] / d0["total_p50"]
                     if ns["total_p50"] and d0["total_p50"] else None)
            delta = (st["first_text_p50"] - d0["first_text_p50"]
                     if st["first_text_p50"] is not None and d0["first_text_p50"] is not None
                     else None)
            share = (d["server_cpu_ms"] / d0["cli_cpu_ms"]
                     if d["server_cpu_ms"] is not None and d0["cli_cpu_ms"] else None)
            errors = ns["error_count"] + st["error_count"]
            out.append(
                f"| {backend} | {route} | {_s(ns['total_p50'])} | {_s(ns['total_p95'])} "
                f"| {_s(ratio)} | {_s(st['first_text_p50'])} | {_ms(delta)} "
                f"| {_s(st['model_call_p50'])} | {_s(st['after_model_p50'])} "
                f"| {_s(st['last_text_p50'])} "
                f"| {_s(st['text_events_median'], 0)}/{_s(st['text_chunks_median'], 0)} "
                f"| {_s(d['server_cpu_ms'], 1)} | {_s(d['cli_cpu_ms'], 0)} "
                f"| {'-' if share is None else f'{share * 100:.1f} %'} "
                f"| {'' if not errors else f'{errors} errors'} |")

    if r.get("null_cli"):
        out += ["", ("## clinvk's own overhead (null CLI: a script printing a recorded stdout "
                "at once)"), "",
                ("Milliseconds. Without the CLI's start-up noise, what clinvk adds to the end "
                "of the answer and to its first text, and the server's CPU per request."), "",
                ("| backend | variant | p50 | p95 | + p50 | first text | + first text "
                "| server CPU ms |"), "|---|---|---|---|---|---|---|---|"]
        for backend, lat in r["null_cli"].items():
            d0 = lat["direct"]
            out.append(f"| {backend} | direct | {_ms(d0['total_p50'], 1)} "
                       f"| {_ms(d0['total_p95'], 1)} | 0 "
                       f"| {_ms(d0['first_text_p50'], 1)} | 0 | - |")
            for route in ROUTES:
                d = lat[route]
                ns, st = d["plain"], d["stream"]
                errors = ns["error_count"] + st["error_count"]
                out.append(
                    f"| {backend} | {route} | {_ms(ns['total_p50'], 1)} "
                    f"| {_ms(ns['total_p95'], 1)} "
                    f"| {_ms(_minus(ns['total_p50'], d0['total_p50']), 1)} "
                    f"| {_ms(st['first_text_p50'], 1)} "
                    f"| {_ms(_minus(st['first_text_p50'], d0['first_text_p50']), 1)} "
                    f"| {_s(d['server_cpu_ms'], 1)}{f' ({errors} errors)' if errors else ''} |")

    out += ["", "## Throughput (requests/s, native route, non-stream)", "",
            ("| backend | clients | requests | direct req/s | clinvk req/s | ratio | direct p50 "
            "| clinvk p50 | server CPU ms/req | server RSS peak MB | tree RSS peak MB |"),
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    for backend, data in r["backends"].items():
        for level, t in data["throughput"].items():
            d, n = t["direct"], t["native"]
            errors = d["errors"] + n["errors"]
            out.append(
                f"| {backend} | {level} | {t['requests']} | {d['rps']:.2f} | {n['rps']:.2f} "
                f"| {n['rps'] / d['rps']:.2f} | {_s(d['p50'])} | {_s(n['p50'])} "
                f"| {n['server_cpu_ms']:.1f} | {n['server_rss_peak_mb']:.0f} "
                f"| {n['tree_rss_peak_mb']:.0f}{f' ({errors} errors)' if errors else ''} |")

    out += ["", "## Server memory (VmRSS, MB)", ""]
    for key, label in (("server_rss_idle_start", "idle, before any request"),
                       ("server_rss_idle_after", "idle, after the load"),
                       ("warm_server_rss_idle", "idle with warm_pool: 1 (tree = + pooled CLIs)")):
        if key in r:
            out.append(f"- {label}: server {r[key]['server_mb']:.1f}, "
                       f"whole tree {r[key]['tree_mb']:.1f}")

    if r.get("warm_pool"):
        out += ["", "## Warm pool (first streamed text, seconds)", "",
                "| backend | bare CLI cold p50 | " + " | ".join(
                    f"{route} warm p50 (hits)" for route in r["plan"]["warm_routes"]) + " |",
                "|---|---|" + "---|" * len(r["plan"]["warm_routes"])]
        for backend, w in r["warm_pool"].items():
            cells = [f"{_s(w[route]['first_text_p50'])} ({w[route]['pool_hits']}/{w[route]['n']})"
                     for route in r["plan"]["warm_routes"]]
            out.append(f"| {backend} | {_s(w['direct_cold']['first_text_p50'])} | "
                       + " | ".join(cells) + " |")

    out += ["", "## Targets", "",
            ("\"met within noise\": over the limit by less than two standard errors of the "
            "difference, while clinvk's own overhead (null CLI) is within it."), "",
            "| target | where | measured | limit | evidence | verdict |",
            "|---|---|---|---|---|---|"]
    for v in r["verdicts"]:
        out.append(f"| {v['target']} | {v['where']} | {v['measured']} | {v['limit']} "
                   f"| {v['evidence']} | {v['verdict']} |")
    return "\n".join(out) + "\n"
