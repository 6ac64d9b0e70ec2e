"""The pinned CLIs the real tier runs, and the settings that point them at the model double.

The settings themselves live in `clinvk.adapters.demo.settings` (`clinvk serve --demo` uses
them too), so what the real-CLI tests prove is exactly what the demo server is given; this
module adds where scripts/install-clis.sh put the CLIs.
"""

from __future__ import annotations

import os
from pathlib import Path

from clinvk.adapters.backends.discovery import probe_file
from clinvk.adapters.demo import settings as _settings
from clinvk.adapters.demo.settings import CLI_NAMES, CODEX_KEY_ENV, GEMINI_MODEL

__all__ = [
    "CLI_NAMES",
    "CODEX_KEY_ENV",
    "GEMINI_MODEL",
    "REPO_ROOT",
    "backend_settings",
    "cli_dir",
    "cli_path",
    "clis_installed",
    "missing_clis",
]

REPO_ROOT = Path(__file__).resolve().parents[2]


def cli_dir() -> Path:
    """Where scripts/install-clis.sh put the pinned CLIs (override: CLINVK_CLI_DIR)."""
    return Path(os.environ.get("CLINVK_CLI_DIR") or REPO_ROOT / ".cache" / "clis")


def cli_path(name: str) -> Path:
    return cli_dir() / "node_modules" / ".bin" / name


def missing_clis() -> list[str]:
    """Names of the CLIs that are not installed (or are claude's unbuilt placeholder)."""
    return [name for name in CLI_NAMES if probe_file(str(cli_path(name))) != "ok"]


def clis_installed() -> bool:
    return not missing_clis()


def backend_settings(double_url: str, scratch: Path) -> dict[str, dict]:
    """Per-backend {command, env, extra_flags, model} running the pinned CLIs against
    `double_url`, with all their state under `scratch` (see the settings module)."""
    commands = {name: str(cli_path(name)) for name in CLI_NAMES}
    return _settings.backend_settings(double_url, scratch, commands)
