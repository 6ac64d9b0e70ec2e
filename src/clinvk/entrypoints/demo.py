"""`clinvk serve --demo`: find the CLIs (the project's pinned ones first), start the stand-in."""

from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import dataclass, field
from typing import Any

from clinvk.adapters.backends.discovery import NPM_PACKAGES, CliDiscovery
from clinvk.adapters.demo import DemoEnvironment
from clinvk.adapters.demo.settings import CLI_NAMES


@dataclass(frozen=True)
class Demo:
    """A running demo: where the stand-in listens, where its state lives, what it configures."""

    url: str
    folder: str
    overrides: dict[str, Any] = field(default_factory=dict)
    #: Backends whose CLI was not found (they stay unavailable).
    missing: tuple[str, ...] = ()
    #: How to install the missing CLIs.
    advice: str = ""


def install_advice(missing: list[str] | tuple[str, ...], discovery: CliDiscovery) -> str:
    """One sentence telling how to install the CLIs the demo could not find."""
    packages = " ".join(NPM_PACKAGES[name] for name in missing)
    npm = f"`npm install -g {packages}`"
    if discovery.checkout is None:
        return f"install them with {npm}"
    return (
        f"run `./scripts/install-clis.sh` in {discovery.checkout} (the pinned versions the "
        f"demo is tested with), or {npm}"
    )


def start_demo(stack: contextlib.ExitStack) -> Demo | None:
    """Start the stand-in for as long as `stack` is open; None (after saying why on stderr)
    when no backend CLI is installed."""
    discovery = CliDiscovery()
    path = os.environ.get("PATH")
    found = {
        name: discovery.locate(name, path=path, ask_npm=True, project_first=True)
        for name in CLI_NAMES
    }
    commands = {name: f.path for name, f in found.items() if f.path is not None}
    missing = tuple(name for name in CLI_NAMES if name not in commands)
    advice = install_advice(missing, discovery) if missing else ""
    if not commands:
        print(
            "clinvk: --demo runs the real claude, codex and gemini CLIs against a stand-in "
            f"model API, and none of them is installed here; {advice}.",
            file=sys.stderr,
        )
        return None
    env = stack.enter_context(DemoEnvironment())
    return Demo(
        url=env.url,
        folder=str(env.folder),
        overrides=env.overrides(commands),
        missing=missing,
        advice=advice,
    )
