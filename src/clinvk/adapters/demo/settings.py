"""How to run the real `claude`, `codex` and `gemini` CLIs headless against the model double.

`backend_settings()` returns, per backend, the data the server's backend config takes
(`command`, `env`, `extra_flags`, `model`). The real-CLI tests and `clinvk serve --demo`
both use it, so what those tests prove is exactly what the demo server is given.

Every setting below exists for one of three reasons (see the backend CLI facts, §0 and
§2-4): keep all state in a throwaway folder, stop the CLIs from talking to anything but the
double, and make API failures fail in about a second instead of minutes of retries. They
were worked out against the pinned versions in scripts/install-clis.sh.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

CLI_NAMES = ("claude", "codex", "gemini")
GEMINI_MODEL = "gemini-2.5-flash"
# Codex reads its provider key from an env var named in the provider table.
CODEX_KEY_ENV = "CLINVK_DOUBLE_API_KEY"


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


def backend_settings(
    double_url: str, scratch: Path, commands: Mapping[str, str]
) -> dict[str, dict]:
    """Per-backend {command, env, extra_flags, model} that point a CLI at `double_url`.

    `commands` maps each backend to its executable ("" when it was not found). All CLI state
    (config, sessions, temp files) goes under `scratch`, which must exist. Each CLI gets its
    own HOME so nothing leaks between them or into the real HOME.
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
        "claude": {"command": commands.get("claude", ""), "env": claude_env,
                   "extra_flags": [], "model": None},
        "codex": {"command": commands.get("codex", ""), "env": codex_env,
                  "extra_flags": codex_flags, "model": None},
        # Always name a model: without one gemini first asks a router model for JSON.
        "gemini": {"command": commands.get("gemini", ""), "env": gemini_env,
                   "extra_flags": [], "model": GEMINI_MODEL},
    }
