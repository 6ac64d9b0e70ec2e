"""The verdict on each target of issue 7, and the markdown tables printed after a run."""

from __future__ import annotations

from typing import Any

ROUTES = ("native", "openai", "anthropic")
NONSTREAM_RATIO = 1.02
FIRST_TEXT_SLACK = 0.020
CPU_SHARE = 0.05
IDLE_RSS_MB = 80
WARM_FIRST_TEXT = 0.15


def _ok(met: bool | None) -> str:
    return "n/a" if met is None else ("met" if met else "NOT met")


def verdicts(r: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per target and backend/route: the measured value, the limit, met or not."""
    rows: list[dict[str, Any]] = []

    def add(target: str, where: str, value: float | None, limit: float, met: bool | None,
            unit: str = "") -> None:
        rows.append({"target": target, "where": where, "value": value, "limit": limit,
                     "unit": unit, "met": met})

    for backend, data in r["backends"].items():
        lat = data["latency"]
        direct = lat["direct"]
        for route in ROUTES:
            d = lat[route]
            where = f"{backend}/{route}"
            ns, base = d["plain"]["total_p50"], direct["total_p50"]
            ratio = ns / base if ns and base else None
            add("non-stream p50 <= 1.02 x direct", where, ratio, NONSTREAM_RATIO,
                None if ratio is None else ratio <= NONSTREAM_RATIO, "x")
            first, base_first = d["stream"]["first_text_p50"], direct["first_text_p50"]
            delta = first - base_first if first is not None and base_first is not None else None
            add("first text <= direct + 20 ms", where, None if delta is None else delta * 1000,
                FIRST_TEXT_SLACK * 1000, None if delta is None else delta <= FIRST_TEXT_SLACK,
                "ms")
            s = d["stream"]
            good = s["n"] - s["error_count"]
            emitted = direct["text_events_median"]
            chunked = (good > 0 and s["own_chunk_runs"] == good and s["text_events_min"] is not None
                       and emitted is not None and s["text_events_min"] >= emitted)
            add("every text delta its own chunk", where, s["text_chunks_min"], emitted or 0,
                chunked if good else None, "chunks (min) vs CLI deltas")
            cpu, cli = d["server_cpu_ms"], direct["cli_cpu_ms"]
            share = cpu / cli if cpu is not None and cli else None
            add("server CPU/request <= 5 % of CLI's", where,
                None if share is None else share * 100, CPU_SHARE * 100,
                None if share is None else share <= CPU_SHARE, "%")
    for backend, lat in r.get("null_cli", {}).items():
        real = r["backends"].get(backend, {}).get("latency", {}).get("direct", {})
        base = lat["direct"]
        for route in ROUTES:
            d = lat[route]
            where = f"{backend}/{route} (null CLI)"
            extra = _minus(d["plain"]["total_p50"], base["total_p50"])
            ratio = (1 + extra / real["total_p50"]) if extra is not None and real.get(
                "total_p50") else None
            add("non-stream p50 <= 1.02 x direct", where, ratio, NONSTREAM_RATIO,
                None if ratio is None else ratio <= NONSTREAM_RATIO, "x (real direct + overhead)")
            delta = _minus(d["stream"]["first_text_p50"], base["first_text_p50"])
            add("first text <= direct + 20 ms", where, None if delta is None else delta * 1000,
                FIRST_TEXT_SLACK * 1000, None if delta is None else delta <= FIRST_TEXT_SLACK,
                "ms")
            cpu, cli = d["server_cpu_ms"], real.get("cli_cpu_ms")
            share = cpu / cli if cpu is not None and cli else None
            add("server CPU/request <= 5 % of CLI's", where,
                None if share is None else share * 100, CPU_SHARE * 100,
                None if share is None else share <= CPU_SHARE, "% (of the real CLI's)")
    for key in ("server_rss_idle_start", "server_rss_idle_after"):
        if key in r:
            mb = r[key]["server_mb"]
            add("idle RSS <= 80 MB", key.replace("server_rss_", ""), mb, IDLE_RSS_MB,
                mb <= IDLE_RSS_MB, "MB")
    for backend, data in r.get("warm_pool", {}).items():
        first = data.get("native", {}).get("first_text_p50")
        add("warm pool first text p50 <= 0.15 s" + ("" if backend == "claude" else " (info)"),
            f"{backend}/native", first, WARM_FIRST_TEXT,
            None if first is None else first <= WARM_FIRST_TEXT, "s")
    return rows


def _minus(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def _s(v: float | None, digits: int = 3) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def _ms(v: float | None, digits: int = 0) -> str:
    return "-" if v is None else f"{v * 1000:.{digits}f}"


def markdown(r: dict[str, Any]) -> str:
    """Tables of the headline figures; every number is also in the JSON."""
    m, rev = r["machine"], r.get("revision", {})
    out = [f"# clinvk benchmark {r['date']}", "",
           f"{m['cpus']} vCPU ({m['cpu_model']}), {m['mem_mb']} MB RAM, Python {m['python']}; "
           f"double: {r['double']['words']} words, {r['double']['delay_ms']} ms before each; "
           f"CLIs: {', '.join(f'{k} {v}' for k, v in r.get('cli_versions', {}).items())}; "
           f"load average start {r['loadavg_start'][0]:.2f}, end {r['loadavg_end'][0]:.2f}; "
           f"wall {r['wall_secs']:.0f} s; commit {rev.get('commit', '?')[:10]}"
           f"{' + uncommitted changes in src/' if rev.get('dirty') else ''}.", ""]

    out += ["## Latency (sequential requests)", "",
            "Times in seconds from spawn / request to the end (non-stream) or to the first and "
            "last text (streamed); ratio and delta are against the bare CLI. Text: pieces of "
            "text the client received, as events / separate body chunks (median), of 20 "
            "the double sent. CPU: ms per request of the server process itself, and of the "
            "CLI it ran.", "",
            "| backend | variant | p50 | p95 | ratio | first text | Δ first (ms) | last text "
            "| text events/chunks | server CPU ms | CLI CPU ms | server/CLI CPU | other load |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for backend, data in r["backends"].items():
        lat = data["latency"]
        d0 = lat["direct"]
        out.append(f"| {backend} | direct CLI | {_s(d0['total_p50'])} | {_s(d0['total_p95'])} "
                   f"| 1.000 | {_s(d0['first_text_p50'])} | 0 | {_s(d0['last_text_p50'])} "
                   f"| {_s(d0['text_events_median'], 0)}/{_s(d0['text_chunks_median'], 0)} "
                   f"| - | {_s(d0['cli_cpu_ms'], 0)} | - | {data['other_load_cores']:.2f} cores |")
        for route in ROUTES:
            d = lat[route]
            ns, st = d["plain"], d["stream"]
            ratio = ns["total_p50"] / d0["total_p50"] if ns["total_p50"] and d0["total_p50"] else None
            delta = (st["first_text_p50"] - d0["first_text_p50"]
                     if st["first_text_p50"] is not None and d0["first_text_p50"] is not None
                     else None)
            share = (d["server_cpu_ms"] / d0["cli_cpu_ms"]
                     if d["server_cpu_ms"] is not None and d0["cli_cpu_ms"] else None)
            errors = ns["error_count"] + st["error_count"]
            out.append(
                f"| {backend} | {route} | {_s(ns['total_p50'])} | {_s(ns['total_p95'])} "
                f"| {_s(ratio)} | {_s(st['first_text_p50'])} | {_ms(delta)} "
                f"| {_s(st['last_text_p50'])} "
                f"| {_s(st['text_events_median'], 0)}/{_s(st['text_chunks_median'], 0)} "
                f"| {_s(d['server_cpu_ms'], 1)} | {_s(d['cli_cpu_ms'], 0)} "
                f"| {'-' if share is None else f'{share * 100:.1f} %'} "
                f"| {'' if not errors else f'{errors} errors'} |")

    if r.get("null_cli"):
        out += ["", "## clinvk's own overhead (null CLI: a script printing a recorded stdout "
                "at once)", "",
                "Milliseconds. Without the CLI's start-up noise, what clinvk adds to the end "
                "of the answer and to its first text, and the server's CPU per request.", "",
                "| backend | variant | p50 | p95 | + p50 | first text | + first text "
                "| server CPU ms |", "|---|---|---|---|---|---|---|---|"]
        for backend, lat in r["null_cli"].items():
            d0 = lat["direct"]
            out.append(f"| {backend} | direct | {_ms(d0['total_p50'], 1)} "
                       f"| {_ms(d0['total_p95'], 1)} | 0 | {_ms(d0['first_text_p50'], 1)} | 0 | - |")
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
            "| backend | clients | requests | direct req/s | clinvk req/s | ratio | direct p50 "
            "| clinvk p50 | server CPU ms/req | server RSS peak MB | tree RSS peak MB |",
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

    out += ["", "## Targets", "", "| target | where | value | limit | verdict |",
            "|---|---|---|---|---|"]
    for v in r["verdicts"]:
        value = "-" if v["value"] is None else f"{v['value']:.3g}"
        out.append(f"| {v['target']} | {v['where']} | {value} {v['unit']} | {v['limit']:.3g} "
                   f"| {_ok(v['met'])} |")
    return "\n".join(out) + "\n"
