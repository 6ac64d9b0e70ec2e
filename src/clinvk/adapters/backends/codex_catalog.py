"""codex's model catalog for runs with client tools.

codex's newest models (its default among them) are listed in its built-in catalog with
`tool_mode: "code_mode_only"` and `supports_search_tool: true`: their tools, the bridge's
included, are not offered to the model as functions but only inside codex's `exec`
JavaScript tool, and MCP tools are moreover *deferred* (named in the prompt, found through
a tool search). A client that offers tools expects its model to call them as functions,
so for such a run codex is given (`-c model_catalog_json=...`) its own catalog, as
`codex debug models` renders it, with every model's tools offered directly; with its own
tools off, also without `apply_patch` and the sub-agent tools the catalog adds per model.
Everything else about the model (its instructions, reasoning levels, context window)
stays as codex has it.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import threading
from collections.abc import Mapping, Sequence
from typing import Any

#: Per-model fields that keep tools away from the model as functions.
_DIRECT = {"tool_mode": None, "supports_search_tool": False}
#: Per-model fields that add codex's own tools (file edits, sub-agents).
_OWN_TOOLS = {"apply_patch_tool_type": None, "multi_agent_version": None}


def direct_tools(catalog: Any, *, builtin_tools: bool) -> dict[str, Any] | None:
    """The catalog with every model's tools offered directly (and, unless kept, without
    the tools it adds of codex's own); None when it is not a catalog."""
    models = catalog.get("models") if isinstance(catalog, dict) else None
    if not isinstance(models, list) or not all(isinstance(m, dict) for m in models):
        return None
    fields = _DIRECT if builtin_tools else {**_DIRECT, **_OWN_TOOLS}
    return {**catalog, "models": [{**m, **fields} for m in models]}


def config_overrides(flags: Sequence[str]) -> list[str]:
    """The `-c key=value` flags among codex flags (they choose the model provider, whose
    catalog `debug models` renders), as `-c` pairs."""
    out: list[str] = []
    items = iter(flags)
    for flag in items:
        name, eq, inline = flag.partition("=")
        if name in ("-c", "--config"):
            out += ["-c", inline if eq else next(items, "")]
    return out


class DirectToolsCatalogs:
    """The rewritten catalog of each codex (command, home, config flags), rendered once and
    kept in a private folder for the life of the process."""

    def __init__(self, timeout_secs: float = 10) -> None:
        self._timeout = timeout_secs
        self._paths: dict[tuple, str | None] = {}
        self._lock = threading.Lock()
        self._folder: str | None = None

    def path(self, command: str, env: Mapping[str, str], flags: Sequence[str] = (), *,
             builtin_tools: bool) -> str | None:
        """The file to name in `model_catalog_json`; None when this codex cannot render its
        catalog (an older codex: it then runs with its own)."""
        try:
            stamp = os.stat(command).st_mtime_ns
        except OSError:
            return None
        overrides = config_overrides(flags)
        key = (command, stamp, env.get("CODEX_HOME"), env.get("HOME"), tuple(overrides),
               builtin_tools)
        with self._lock:
            if key not in self._paths:
                self._paths[key] = self._write(command, env, overrides, builtin_tools)
            return self._paths[key]

    def _render(self, argv: list[str], env: Mapping[str, str]) -> Any:
        try:
            done = subprocess.run(argv, env=dict(env), stdin=subprocess.DEVNULL,
                                  capture_output=True, timeout=self._timeout, check=False)
            return json.loads(done.stdout) if done.returncode == 0 else None
        except (OSError, subprocess.TimeoutExpired, ValueError):
            return None

    def _write(self, command: str, env: Mapping[str, str], overrides: list[str],
               builtin_tools: bool) -> str | None:
        # Once per codex, home and flags (about a second; the runner calls the backend's
        # `prepare` in a worker thread). The catalog the runs would use (codex may refresh
        # it from its provider), else, if that fails or hangs, the one shipped with codex.
        base = [command, "debug", "models", *overrides]
        catalog = self._render(base, env)
        if direct_tools(catalog, builtin_tools=builtin_tools) is None:
            catalog = self._render([*base, "--bundled"], env)
        rewritten = direct_tools(catalog, builtin_tools=builtin_tools)
        if rewritten is None:
            return None
        if self._folder is None:
            self._folder = tempfile.mkdtemp(prefix="clinvk-codex-catalog-")
        fd, path = tempfile.mkstemp(suffix=".json", dir=self._folder)
        with os.fdopen(fd, "w") as f:
            json.dump(rewritten, f)
        return path
