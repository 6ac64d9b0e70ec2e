"""codex's catalog for runs with client tools: every model's tools offered directly."""

from __future__ import annotations

import json
import stat
from pathlib import Path

from clinvk.adapters.backends.codex import CodexBackend
from clinvk.adapters.backends.codex_catalog import (
    DirectToolsCatalogs,
    config_overrides,
    direct_tools,
)
from clinvk.domain.config import BackendConfig
from clinvk.domain.models import RunSpec
from clinvk.domain.tools import BridgeSpec

CATALOG = {"models": [
    {"slug": "gpt-6.1-sol", "tool_mode": "code_mode_only", "supports_search_tool": True,
     "apply_patch_tool_type": "freeform", "multi_agent_version": "v2",
     "base_instructions": "You are Codex."},
    {"slug": "gpt-5.5", "tool_mode": None, "supports_search_tool": True},
], "etag": "x"}


def test_direct_tools_turns_off_code_mode_and_tool_search_only():
    """Kept tools: each model loses code mode and deferred (searched) tools, nothing else."""
    out = direct_tools(CATALOG, builtin_tools=True)
    sol, five = out["models"]
    assert (sol["tool_mode"], sol["supports_search_tool"]) == (None, False)
    assert sol["apply_patch_tool_type"] == "freeform" and sol["multi_agent_version"] == "v2"
    assert sol["base_instructions"] == "You are Codex." and out["etag"] == "x"
    assert (five["tool_mode"], five["supports_search_tool"]) == (None, False)


def test_direct_tools_without_builtin_tools_also_drops_codex_own_model_tools():
    """Without codex's own tools the catalog adds no apply_patch and no sub-agent tools."""
    [sol, _] = direct_tools(CATALOG, builtin_tools=False)["models"]
    assert sol["apply_patch_tool_type"] is None and sol["multi_agent_version"] is None


def test_direct_tools_refuses_what_is_not_a_catalog():
    """Anything but {"models": [objects]} gives None (codex then keeps its own)."""
    for value in (None, [], {"models": "x"}, {"models": [1]}, {}):
        assert direct_tools(value, builtin_tools=False) is None


def _fake_codex(tmp_path: Path, body: str) -> Path:
    script = tmp_path / "codex"
    script.write_text("#!/bin/sh\necho \"$@\" >> \"$(dirname \"$0\")/calls\"\n" + body)
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


def test_catalog_is_dumped_once_per_codex_and_rewritten(tmp_path):
    """`codex debug models` runs once per codex and home; the file named is the rewrite."""
    codex = _fake_codex(tmp_path, f"echo '{json.dumps(CATALOG)}'\n")
    catalogs = DirectToolsCatalogs()
    env = {"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    first = catalogs.path(str(codex), env, builtin_tools=False)
    again = catalogs.path(str(codex), env, builtin_tools=False)
    assert first is not None and first == again
    assert json.loads(Path(first).read_text()) == direct_tools(CATALOG, builtin_tools=False)
    assert (tmp_path / "calls").read_text() == "debug models\n"


def test_the_run_flags_choose_the_provider_and_the_bundled_catalog_is_the_fallback(tmp_path):
    """The run's `-c` flags (its provider) go to `debug models`; when that fails (a
    provider that cannot be reached), the catalog shipped with codex is used."""
    body = ('case "$*" in *--bundled*) echo \'' + json.dumps(CATALOG) + '\' ;; '
            '*) exit 1 ;; esac\n')
    codex = _fake_codex(tmp_path, body)
    flags = ["--add-dir", "/x", "-c", "model_provider=p", "--config=a.b=1", "-s", "read-only"]
    path = DirectToolsCatalogs().path(str(codex), {"PATH": "/usr/bin:/bin"}, flags,
                                      builtin_tools=True)
    assert path is not None
    assert json.loads(Path(path).read_text())["models"][1]["slug"] == "gpt-5.5"
    assert (tmp_path / "calls").read_text().splitlines() == [
        "debug models -c model_provider=p -c a.b=1",
        "debug models -c model_provider=p -c a.b=1 --bundled"]


def test_config_overrides_keeps_only_the_c_pairs():
    """Only `-c k=v` / `--config k=v` / `--config=k=v` are kept, as `-c` pairs."""
    assert config_overrides(["-c", "a=1", "--config", "b=2", "--config=c=3", "--oss",
                             "-p", "prof"]) == ["-c", "a=1", "-c", "b=2", "-c", "c=3"]


def test_a_codex_that_cannot_render_its_catalog_gets_none(tmp_path):
    """An older codex (no `debug models`, or not JSON) and a missing command give None."""
    failing = _fake_codex(tmp_path, "echo 'unknown command' >&2; exit 2\n")
    catalogs = DirectToolsCatalogs()
    assert catalogs.path(str(failing), {"PATH": "/usr/bin:/bin"}, builtin_tools=True) is None
    assert catalogs.path(str(tmp_path / "none"), {}, builtin_tools=True) is None


def test_a_run_with_client_tools_names_the_catalog(tmp_path):
    """codex's argv for a run with client tools sets model_catalog_json to the rewrite;
    a run without tools does not."""
    codex = _fake_codex(tmp_path, f"echo '{json.dumps(CATALOG)}'\n")
    backend = CodexBackend(DirectToolsCatalogs())
    tools = BridgeSpec(url="http://127.0.0.1:1/mcp/t", names=("get_weather",))
    spec = RunSpec(backend="codex", prompt="hi", workdir=str(tmp_path), tools=tools)
    argv = backend.invocation(spec, BackendConfig(), str(codex), None).argv
    [setting] = [a for a in argv if a.startswith("model_catalog_json=")]
    path = json.loads(setting.partition("=")[2])
    assert json.loads(Path(path).read_text())["models"][0]["tool_mode"] is None
    plain = RunSpec(backend="codex", prompt="hi", workdir=str(tmp_path))
    assert not any("model_catalog_json" in a
                   for a in backend.invocation(plain, BackendConfig(), str(codex), None).argv)


def test_prepare_renders_the_catalog_before_the_argv_is_built(tmp_path):
    """`prepare` (called by the runner in a worker thread) renders the catalog of a run
    with client tools; building its argv then finds it without another call; a run
    without tools renders nothing."""
    codex = _fake_codex(tmp_path, f"echo '{json.dumps(CATALOG)}'\n")
    backend = CodexBackend(DirectToolsCatalogs())
    plain = RunSpec(backend="codex", prompt="hi", workdir=str(tmp_path))
    backend.prepare(plain, BackendConfig(), str(codex))
    assert not (tmp_path / "calls").exists()
    tools = BridgeSpec(url="http://127.0.0.1:1/mcp/t", names=("get_weather",))
    spec = RunSpec(backend="codex", prompt="hi", workdir=str(tmp_path), tools=tools)
    backend.prepare(spec, BackendConfig(), str(codex))
    assert (tmp_path / "calls").read_text() == "debug models\n"
    argv = backend.invocation(spec, BackendConfig(), str(codex), None).argv
    assert any(a.startswith("model_catalog_json=") for a in argv)
    assert (tmp_path / "calls").read_text() == "debug models\n"
