"""Record what each real CLI prints when the model API refuses it (limits, overload, 5xx)
and while it retries; writes tests/fixtures/cli-samples/<cli>/{limit,retry}-*.

    .venv/bin/python scripts/record-limit-samples.py [claude|codex|gemini ...]

Each CLI runs once per case against the model-API double, configured as the real-tier
tests configure it (tests/support/clis.py), with the retry budget of the case (0 unless
the case says). Paths and ids that change between runs are replaced by placeholders; each
folder's `_limits.json` lists every case's knobs, budget, exit code and model calls.
gemini's budget goes through a system settings overlay, which gemini reads only when root
owns it (see clinvk.adapters.backends.gemini_settings): record as root.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))

from clinvk.adapters.backends.gemini_settings import (
    SYSTEM_SETTINGS_ENV,
    SettingsOverlays,
)
from tests.support.clis import backend_settings
from tests.support.model_double import ModelDouble

OUT = ROOT / "tests" / "fixtures" / "cli-samples"
RETRY_INFO = {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "37s"}


def _quota(quota_id: str) -> dict:
    return {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [{
        "quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests",
        "quotaId": quota_id, "quotaValue": "250"}]}


QUOTA_MESSAGE = "You exceeded your current quota, please check your plan and billing details."
# (case name, double knobs, retry budget)
CASES: dict[str, list[tuple[str, dict, int]]] = {
    "claude": [
        ("limit-429", {"fail_status": 429, "fail_headers": {"retry-after": "37"}}, 0),
        ("limit-529", {"fail_status": 529}, 0),
        ("limit-503", {"fail_status": 503}, 0),
        ("limit-400-credit", {"fail_status": 400, "fail_message":
            "Your credit balance is too low to access the Anthropic API."}, 0),
        ("retry-500-retries2", {"fail_status": 500}, 2),
        ("retry-500-then-ok", {"fail_status": 500, "fail_calls": 1}, 2),
    ],
    "codex": [
        ("limit-429", {"fail_status": 429, "fail_headers": {
            "retry-after": "37", "x-ratelimit-reset-requests": "37s"}}, 0),
        ("limit-insufficient-quota", {"fail_status": 429, "fail_error": "insufficient_quota",
                                      "fail_message": QUOTA_MESSAGE}, 0),
        ("limit-usage-limit-resets-at", {"fail_status": 429, "fail_error": "usage_limit_reached",
            "fail_message": "The usage limit has been reached",
            "fail_extra": {"plan_type": "plus", "resets_at": "<now+4000>"}}, 0),
        ("limit-503", {"fail_status": 503}, 0),
        ("limit-529", {"fail_status": 529}, 0),
        ("retry-503-retries2", {"fail_status": 503}, 2),
    ],
    "gemini": [
        ("limit-429", {"fail_status": 429}, 0),
        ("limit-429-retry-info", {"fail_status": 429,
                                  "fail_extra": {"details": [RETRY_INFO]}}, 0),
        ("limit-429-quota-daily", {"fail_status": 429, "fail_message": QUOTA_MESSAGE,
            "fail_extra": {"details": [
                _quota("GenerateRequestsPerDayPerProjectPerModel-FreeTier"), RETRY_INFO]}}, 0),
        ("limit-503", {"fail_status": 503,
                       "fail_message": "The model is overloaded. Please try again later."}, 0),
        ("limit-529", {"fail_status": 529}, 0),
        ("retry-500-retries2", {"fail_status": 500}, 2),
        ("retry-429-retry-info-retries2", {"fail_status": 429, "fail_extra": {"details": [
            {**RETRY_INFO, "retryDelay": "2s"}]}}, 2),
    ],
}


def _knobs(knobs: dict) -> dict:
    out = json.loads(json.dumps(knobs))
    extra = out.get("fail_extra") or {}
    if extra.get("resets_at") == "<now+4000>":
        extra["resets_at"] = int(time.time()) + 4000
    return out


def _argv(cli: str, s: dict, retries: int, overlays: SettingsOverlays) -> tuple[list, dict]:
    env = {"PATH": os.environ["PATH"], **s["env"]}
    if cli == "claude":
        env["CLAUDE_CODE_MAX_RETRIES"] = str(retries)
        return [s["command"], "-p", "--output-format", "stream-json", "--verbose", "--",
                "hi"], env
    if cli == "codex":
        knob = [f"model_providers.double.request_max_retries={retries}",
                f"model_providers.double.stream_max_retries={retries}"]
        flags = [*s["extra_flags"], *(x for k in knob for x in ("-c", k))]
        return [s["command"], "exec", "--json", "--skip-git-repo-check", *flags, "--",
                "hi"], env
    path = overlays.path({"general": {"maxAttempts": retries + 1}}, {})
    if path is None:
        raise SystemExit(f"gemini: {overlays.problem}")
    env[SYSTEM_SETTINGS_ENV] = path
    return [s["command"], "-o", "stream-json", "-m", s["model"], "--prompt=hi"], env


def _scrub(text: str, scratch: str, port: int) -> str:
    text = text.replace(scratch, "<scratch>").replace(f"127.0.0.1:{port}", "127.0.0.1:<port>")
    text = re.sub(r"/root/\.cache/clinvk-gemini-\w+", "<overlay>", text)
    return re.sub(r"\n\s+at [^\n]+", "\n    at <stack>", text)


def record(cli: str, overlays: SettingsOverlays) -> None:
    table: dict[str, dict] = {}
    for name, knobs, retries in CASES[cli]:
        knobs = _knobs(knobs)
        with ModelDouble(**knobs) as double:
            scratch = tempfile.mkdtemp(prefix="limits-")
            settings = backend_settings(double.url, Path(scratch))[cli]
            argv, env = _argv(cli, settings, retries, overlays)
            work = Path(scratch) / "work"
            work.mkdir()
            done = subprocess.run(argv, cwd=work, env=env, capture_output=True, timeout=300,
                                  stdin=subprocess.DEVNULL, check=False)
            calls = [r for r in double.requests() if r["kind"] in ("generate", "stream")]
            (OUT / cli / f"{name}.jsonl").write_text(
                _scrub(done.stdout.decode(), scratch, double.port))
            if done.stderr.strip():
                (OUT / cli / f"{name}.stderr.txt").write_text(
                    _scrub(done.stderr.decode(), scratch, double.port))
        table[name] = {"double": knobs, "max_retries": retries, "exit_code": done.returncode,
                       "model_calls": len(calls)}
        print(cli, name, table[name], flush=True)
    (OUT / cli / "_limits.json").write_text(json.dumps(
        {"how": __doc__.strip().splitlines()[0] + " (scripts/record-limit-samples.py)",
         "cases": table}, indent=1) + "\n")


def main() -> None:
    overlays = SettingsOverlays()
    for cli in sys.argv[1:] or list(CASES):
        record(cli, overlays)


if __name__ == "__main__":
    main()
