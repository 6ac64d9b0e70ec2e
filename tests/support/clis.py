"""How to run the real `claude`, `codex` and `gemini` CLIs headless against the model double.

`backend_settings()` returns, per backend, the data the server's backend config takes
(`command`, `env`, `extra_flags`, `model`). The same data drives the direct smoke tests in
tests/real, so what those tests prove is exactly what the server will be given.

Every setting below exists for one of three reasons (see the backend CLI facts, §0 and
§2-4): keep all state in a throwaway folder, stop the CLIs from talking to anything but the
double, and make API failures fail in about a second instead of minutes of retries.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
CLI_NAMES = ("claude", "codex", "gemini")
GEMINI_MODEL = "gemini-2.5-flash"
# Codex reads its provider key from an env var named in the provider table.
CODEX_KEY_ENV = "CLINVK_DOUBLE_API_KEY"


def cli_dir() -> Path:
    """Where scripts/install-clis.sh put the pinned CLIs (override: CLINVK_CLI_DIR)."""
    return Path(os.environ.get("CLINVK_CLI_DIR") or REPO_ROOT / ".cache" / "clis")


def cli_path(name: str) -> Path:
    return cli_dir() / "node_modules" / ".bin" / name


def missing_clis() -> list[str]:
    """Names of the CLIs that are not installed (or are claude's unbuilt placeholder)."""
    missing = []
    for name in CLI_NAMES:
        path = cli_path(name)
        if not (path.is_file() and os.access(path, os.X_OK)):
            missing.append(name)
            continue
        with path.open("rb") as f:
            head = f.read(4)
        # claude's npm placeholder (left when install scripts did not run) is neither a
        # native binary nor a script, and exec fails with "Exec format error".
        if not (head.startswith(b"\x7fELF") or head.startswith(b"#!")):
            missing.append(name)
    return missing


def clis_installed() -> bool:
    return not missing_clis()


def _codex_provider(double_url: str) -> str:
    # TOML inline table for `-c model_providers.double=...`. Zero retries so an injected
    # error fails in well under a second (defaults: 30 requests / 27 s for a 500). The idle
    # timeout only bounds gaps *between* SSE events; a silent server still needs the
    # wrapper's own deadline (facts §3.4).
    fields = {
        "name": '"clinvk-double"',
        "base_url": json.dumps(double_url.rstrip("/") + "/v1"),
        "env_key": json.dumps(CODEX_KEY_ENV),
        "wire_api": '"responses"',
        "request_max_retries": "0",
        "stream_max_retries": "0",
        "stream_idle_timeout_ms": "20000",
    }
    return "model_providers.double={" + ",".join(f"{k}={v}" for k, v in fields.items()) + "}"


def backend_settings(double_url: str, scratch: Path) -> dict[str, dict]:
    """Per-backend {command, env, extra_flags, model} that point a CLI at `double_url`.

    All CLI state (config, sessions, temp files) goes under `scratch`, which must exist.
    Each CLI gets its own HOME so nothing leaks between them or into the real HOME.
    """
    scratch = Path(scratch)
    url = double_url.rstrip("/")
    # One TMPDIR outside every home: gemini drops error reports there, and codex refuses
    # to install its helper binaries when its home lies inside the temp dir.
    tmp = scratch / "tmp"
    homes = {name: scratch / f"{name}-home" for name in CLI_NAMES}
    for d in (tmp, *homes.values()):
        d.mkdir(parents=True, exist_ok=True)

    claude_env = {
        "HOME": str(homes["claude"]),
        "TMPDIR": str(tmp),
        "CLAUDE_CONFIG_DIR": str(homes["claude"] / ".claude"),
        "ANTHROPIC_BASE_URL": url,
        "ANTHROPIC_API_KEY": "double-key",
        # Without this claude still resolves the real API host for side traffic.
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_AUTOUPDATER": "1",
        # Default is 10 retries over ~3 minutes for every API error, even 401.
        "CLAUDE_CODE_MAX_RETRIES": "0",
    }
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        # claude refuses bypassPermissions as root unless it is told it runs in a sandbox.
        claude_env["IS_SANDBOX"] = "1"

    codex_env = {
        "HOME": str(homes["codex"]),
        "TMPDIR": str(tmp),
        "CODEX_HOME": str(homes["codex"] / ".codex"),
        CODEX_KEY_ENV: "double-key",
    }
    (homes["codex"] / ".codex").mkdir(exist_ok=True)
    # Valid both as `codex exec FLAGS PROMPT` and `codex exec FLAGS resume ID PROMPT`.
    # `--disable plugins` and `analytics.enabled=false` together stop the git ls-remote
    # and the outside lookups codex does on every run (either alone is not enough).
    codex_flags = [
        "--disable", "plugins",
        "-c", "analytics.enabled=false",
        "-c", "model_provider=double",
        "-c", _codex_provider(url),
    ]

    gemini_home = homes["gemini"]
    (gemini_home / ".gemini").mkdir(exist_ok=True)
    settings = {
        "security": {"auth": {"selectedType": "gemini-api-key"}},  # else exit 41
        "privacy": {"usageStatisticsEnabled": False},  # no telemetry lookups
        "tools": {"useRipgrep": False},  # no "Ripgrep is not available" on stderr
        "general": {
            "maxAttempts": 1,  # default 10 attempts, ~4 min on a 500
            # gemini 0.61.0 starts background cleanups that race the main code for the
            # projects.json lock (a lock *directory*); when the process exits while a
            # retried lock is held, projects.json.lock stays behind and the next run in
            # this home stalls until it is 10 s stale (13-52 s observed). Disabling the
            # session cleanup removes one of the racers, which made sequential runs
            # reliable. Concurrent runs in one home can still leave the lock behind.
            "sessionRetention": {"enabled": False},
        },
    }
    (gemini_home / ".gemini" / "settings.json").write_text(json.dumps(settings, indent=2))
    gemini_env = {
        "HOME": str(gemini_home),
        "TMPDIR": str(tmp),
        "GEMINI_CLI_HOME": str(gemini_home),
        "GOOGLE_GEMINI_BASE_URL": url,
        "GEMINI_API_KEY": "double-key",
        "GEMINI_CLI_TRUST_WORKSPACE": "true",  # else exit 55 in an untrusted cwd
        # One process instead of a relaunched child: faster, and SIGTERM reaches it.
        "GEMINI_CLI_NO_RELAUNCH": "true",
        "COLORTERM": "truecolor",  # silences the colour-support warning on stderr
    }

    return {
        "claude": {"command": str(cli_path("claude")), "env": claude_env,
                   "extra_flags": [], "model": None},
        "codex": {"command": str(cli_path("codex")), "env": codex_env,
                  "extra_flags": codex_flags, "model": None},
        # Always name a model: without one gemini first asks a router model for JSON.
        "gemini": {"command": str(cli_path("gemini")), "env": gemini_env,
                   "extra_flags": [], "model": GEMINI_MODEL},
    }
