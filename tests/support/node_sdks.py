"""Run the Vercel AI SDK (node) against a live clinvk, through tests/support/vercel_ai.mjs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).with_name("vercel_ai.mjs")
PACKAGES = ("ai", "@ai-sdk/openai", "@ai-sdk/anthropic")


def sdk_dir() -> Path:
    """Where scripts/install-node-sdks.sh puts the pinned packages."""
    return Path(os.environ.get("CLINVK_NODE_SDK_DIR", ROOT / ".cache" / "node-sdks"))


def require_node_sdks() -> None:
    """Fail (never skip) with how to install them when node or a package is missing."""
    missing = [p for p in PACKAGES if not (sdk_dir() / "node_modules" / p / "package.json").exists()]
    if shutil.which("node") is None:
        missing.insert(0, "node")
    if missing:
        pytest.fail(
            f"Vercel AI SDK packages not installed: {', '.join(missing)} (looked in {sdk_dir()}); "
            "run scripts/install-node-sdks.sh or set CLINVK_NODE_SDK_DIR",
            pytrace=False,
        )


def vercel_ai(base_url: str, **call) -> dict:
    """One generateText / streamText call (`mode="stream"`) against `base_url`; its results."""
    require_node_sdks()
    done = subprocess.run(
        ["node", str(SCRIPT), json.dumps({"baseURL": base_url, **call})],
        check=False, capture_output=True, text=True,
        env={**os.environ, "CLINVK_NODE_SDK_DIR": str(sdk_dir())},
        timeout=240,  # a hang guard only
    )
    assert done.returncode == 0, f"node exited {done.returncode}: {done.stderr[-2000:]}"
    return json.loads(done.stdout.strip().splitlines()[-1])
