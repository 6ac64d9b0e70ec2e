"""CLI discovery: where each CLI is looked for, npm's placeholder, versions and install hints."""

from __future__ import annotations

import os
import re
import stat
import threading
from pathlib import Path

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st

from clinvk.adapters.backends.discovery import (
    NPM_PACKAGES,
    PINNED_VERSIONS,
    Candidate,
    CliDiscovery,
    VersionProbes,
    candidates,
    install_hint,
    is_placeholder,
    locate,
    npmrc_prefix,
    parse_version,
    probe_file,
    search_dirs,
)
from clinvk.adapters.backends.runner import SubprocessBackendRunner
from clinvk.domain.config import BackendConfig, Config
from clinvk.domain.errors import BackendUnavailable
from clinvk.domain.models import RunSpec

REPO = Path(__file__).resolve().parents[2]
HOME = "/home/u"
ELF = b"\x7fELF\x02\x01\x01\x00"


def _exe(path: Path, content: bytes | str = "#!/bin/sh\necho 1.2.3\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


# ---------------------------------------------------------------------------------------
# The pure core.


def test_search_order_is_path_npm_per_user_folders_then_the_project():
    """Folders come in the documented order: PATH, npm's global bins, per-user installers,
    system-wide package managers, and the project's own cache last."""
    environ = {
        "PATH": "/usr/bin:/bin",
        "NPM_CONFIG_PREFIX": "/opt/npm",
        "NVM_BIN": "/home/u/.nvm/versions/node/v20/bin",
    }
    dirs = search_dirs(
        environ, HOME, npmrc="/home/u/npmrc-prefix", npm_prefix="/asked",
        project=["/repo/.cache/clis/node_modules/.bin"],
    )
    assert [(d.path, d.source) for d in dirs] == [
        ("/usr/bin", "PATH"),
        ("/bin", "PATH"),
        ("/opt/npm/bin", "npm global bin"),
        ("/home/u/npmrc-prefix/bin", "npm global bin"),
        ("/home/u/.npm-global/bin", "npm global bin"),
        ("/asked/bin", "npm global bin"),
        ("/home/u/.local/bin", "~/.local/bin"),
        ("/home/u/.volta/bin", "Volta"),
        ("/home/u/.bun/bin", "Bun"),
        ("/home/u/.local/share/pnpm", "pnpm"),
        ("/home/u/.nvm/versions/node/v20/bin", "nvm"),
        ("/opt/homebrew/bin", "Homebrew"),
        ("/usr/local/bin", "/usr/local/bin"),
        ("/repo/.cache/clis/node_modules/.bin", "project CLI cache"),
    ]


def test_installer_folders_follow_their_environment_variables():
    """VOLTA_HOME, BUN_INSTALL, PNPM_HOME and the lower-case npm prefix move those folders."""
    environ = {
        "npm_config_prefix": "/np",
        "VOLTA_HOME": "/v",
        "BUN_INSTALL": "/b",
        "PNPM_HOME": "/p",
    }
    paths = [d.path for d in search_dirs(environ, HOME)]
    assert {"/np/bin", "/v/bin", "/b/bin", "/p"} <= set(paths)
    assert "/home/u/.volta/bin" not in paths


def test_repeats_and_relative_path_entries_are_dropped():
    """A folder listed twice is searched once, where it first appears; relative PATH entries
    (which would depend on the server's cwd) are never searched."""
    environ = {"PATH": "bin:/usr/local/bin/:/usr/bin::/usr/bin"}
    dirs = search_dirs(environ, "")
    paths = [d.path for d in dirs]
    assert paths[:2] == ["/usr/local/bin", "/usr/bin"]
    assert len(paths) == len(set(paths))
    assert all(os.path.isabs(p) for p in paths)
    assert next(d for d in dirs if d.path == "/usr/local/bin").source == "PATH"


@given(st.lists(st.sampled_from(["/a", "/b", "/c/d", "/usr/local/bin", "rel", ""]), max_size=8))
def test_path_entries_always_lead_in_their_own_order(entries):
    """Whatever PATH holds, its absolute entries come first, in PATH's order, each once."""
    dirs = search_dirs({"PATH": ":".join(entries)}, HOME)
    expected = list(dict.fromkeys(e for e in entries if e.startswith("/")))
    assert [d.path for d in dirs[: len(expected)]] == expected
    assert all(d.source == "PATH" for d in dirs[: len(expected)])
    assert len({d.path for d in dirs}) == len(dirs)


def test_claude_also_gets_its_native_installers_folder():
    """claude is looked for in ~/.claude/local (its native installer) before ~/.local/bin;
    the other CLIs are not."""
    dirs = search_dirs({"PATH": "/usr/bin"}, HOME)
    claude = [c.path for c in candidates("claude", dirs, HOME)]
    native = "/home/u/.claude/local/claude"
    assert claude.index(native) == claude.index("/home/u/.local/bin/claude") - 1
    assert claude[0] == "/usr/bin/claude"
    assert native.replace("claude", "codex") not in [
        c.path for c in candidates("codex", dirs, HOME)
    ]


def test_the_first_usable_candidate_wins():
    """locate returns the first candidate the probe calls ok, with where it was found."""
    tries = [Candidate(path=f"/{i}/codex", source=f"s{i}") for i in range(3)]
    status = {"/0/codex": "missing", "/1/codex": "ok", "/2/codex": "ok"}
    found = locate("codex", tries, status.__getitem__, hint="h")
    assert (found.path, found.source, found.problem) == ("/1/codex", "s1", None)


def test_a_placeholder_is_skipped_for_a_real_install_and_named_when_alone():
    """npm's placeholder never counts as installed: a later real CLI wins, and with none the
    problem names the placeholder and says how to finish the install."""
    tries = [
        Candidate(path="/npm/bin/claude", source="npm global bin"),
        Candidate(path="/home/u/.local/bin/claude", source="~/.local/bin"),
    ]
    real = {"/npm/bin/claude": "placeholder", "/home/u/.local/bin/claude": "ok"}
    assert locate("claude", tries, real.__getitem__, hint="h").path == tries[1].path
    alone = {"/npm/bin/claude": "placeholder", "/home/u/.local/bin/claude": "missing"}
    found = locate(
        "claude", tries, alone.__getitem__, hint="h", installer_of=lambda p: "/pkg/install.cjs"
    )
    assert found.path is None
    assert "/npm/bin/claude is npm's placeholder" in (found.problem or "")
    assert "node /pkg/install.cjs" in (found.hint or "")
    assert "npm install -g @anthropic-ai/claude-code" in (found.hint or "")


def test_not_found_lists_where_it_looked_and_carries_the_hint():
    """A CLI found nowhere reports the kinds of folders searched and the install hint."""
    tries = [Candidate(path="/x/gemini", source="PATH"), Candidate(path="/y/gemini", source="pnpm")]
    found = locate("gemini", tries, lambda p: "missing", hint="install it somehow")
    assert found.problem == "gemini not found in PATH, pnpm"
    assert found.hint == "install it somehow"


@pytest.mark.parametrize(
    ("head", "placeholder"),
    [
        (ELF, False),
        (b"#!/usr/bin/env node\n", False),
        (b"\xcf\xfa\xed\xfe", False),  # Mach-O 64-bit (macOS)
        (b"\xca\xfe\xba\xbe", False),  # universal binary
        (b"placeholder: run install.cjs", True),
        (b"", True),
        (b"\x00\x00\x00\x00", True),
    ],
)
def test_placeholder_detection(head, placeholder):
    """Only ELF, Mach-O and `#!` files count as executable; anything else is a placeholder."""
    assert is_placeholder(head) is placeholder


@pytest.mark.parametrize(
    ("output", "version"),
    [
        ("2.1.197 (Claude Code)\n", "2.1.197"),
        ("codex-cli 0.169.0\n", "0.169.0"),
        ("0.61.0\n", "0.61.0"),
        ("gemini 0.62.0-nightly.20260101 (preview)", "0.62.0-nightly.20260101"),
        ("Warning: something 12\nv1.2.3+build.4", "1.2.3+build.4"),
        ("no version here", None),
        ("", None),
    ],
)
def test_version_parsing(output, version):
    """The first x.y.z (with any pre-release or build suffix) of `--version` is the version."""
    assert parse_version(output) == version


def test_npmrc_prefix_is_read_and_expanded():
    """`prefix=` in ~/.npmrc (with ~ or ${HOME}) is where `npm install -g` puts CLIs."""
    assert npmrc_prefix("fund=false\nprefix=~/.npm-packages\n", HOME) == "/home/u/.npm-packages"
    assert npmrc_prefix("prefix = ${HOME}/npm\n", HOME) == "/home/u/npm"
    assert npmrc_prefix('prefix="/opt/n"', HOME) == "/opt/n"
    assert npmrc_prefix("fund=false\n# prefix=/no\n", HOME) is None


def test_install_hint_names_the_npm_package_the_script_and_the_config_key():
    """The hint gives the npm command for the right package, the project's install script when
    running from a checkout, and the config key that points at an existing binary."""
    hint = install_hint("codex", checkout=Path("/src/clinvk"))
    assert "`npm install -g @openai/codex`" in hint
    assert "`./scripts/install-clis.sh` in /src/clinvk" in hint
    assert "`backends.codex.command`" in hint
    assert "install-clis.sh" not in install_hint("codex", checkout=None)


def test_pins_match_the_install_script():
    """The versions and packages discovery knows are the ones scripts/install-clis.sh installs."""
    text = (REPO / "scripts" / "install-clis.sh").read_text()
    pins = re.search(r"pins=\(([^)]*)\)", text)
    assert pins is not None
    installed = dict(p.rsplit("@", 1) for p in pins.group(1).split())
    assert installed == {NPM_PACKAGES[n]: v for n, v in PINNED_VERSIONS.items()}


# ---------------------------------------------------------------------------------------
# The shell, on a temporary file system.


def test_probe_file_tells_real_placeholder_and_missing_apart(tmp_path):
    """probe_file: an executable script or ELF is ok, claude's stub is a placeholder, and a
    non-executable or absent file is missing."""
    assert probe_file(str(_exe(tmp_path / "script"))) == "ok"
    assert probe_file(str(_exe(tmp_path / "elf", ELF + b"\0" * 16))) == "ok"
    assert probe_file(str(_exe(tmp_path / "stub", b"stub, not the CLI"))) == "placeholder"
    (tmp_path / "plain").write_text("#!/bin/sh\n")
    assert probe_file(str(tmp_path / "plain")) == "missing"
    assert probe_file(str(tmp_path / "absent")) == "missing"
    assert probe_file(str(tmp_path)) == "missing"


def test_discovery_finds_clis_in_per_user_folders_and_the_project_cache(tmp_path):
    """With an empty PATH, CLIs are found in ~/.local/bin, ~/.claude/local and the project's
    .cache/clis of the checkout."""
    home, checkout = tmp_path / "home", tmp_path / "repo"
    _exe(home / ".claude" / "local" / "claude")
    _exe(home / ".local" / "bin" / "codex")
    gemini = _exe(checkout / ".cache" / "clis" / "node_modules" / ".bin" / "gemini")
    d = CliDiscovery({"PATH": ""}, home=str(home), checkout=checkout, ask_npm=lambda p: None)
    claude, codex, gem = (d.locate(n, path="") for n in ("claude", "codex", "gemini"))
    assert (claude.path, claude.source) == (
        str(home / ".claude/local/claude"), "claude's native installer"
    )
    assert (codex.path, codex.source) == (str(home / ".local/bin/codex"), "~/.local/bin")
    assert (gem.path, gem.source) == (str(gemini), "project CLI cache")


def test_clinvk_cli_dir_comes_before_the_checkouts_cache(tmp_path):
    """`CLINVK_CLI_DIR` (where install-clis.sh was told to install) is searched before the
    checkout's own `.cache/clis`, and `project_first` puts both before PATH."""
    checkout = tmp_path / "repo"
    _exe(checkout / ".cache" / "clis" / "node_modules" / ".bin" / "codex")
    other = _exe(tmp_path / "elsewhere" / "node_modules" / ".bin" / "codex")
    on_path = _exe(tmp_path / "bin" / "codex")
    environ = {"CLINVK_CLI_DIR": str(tmp_path / "elsewhere")}
    d = CliDiscovery(environ, home="", checkout=checkout, ask_npm=lambda p: None)
    assert d.locate("codex", path=str(on_path.parent)).path == str(on_path)
    assert d.locate("codex", path=str(on_path.parent), project_first=True).path == str(other)


def test_npm_is_asked_once_and_only_when_a_cli_is_missing(tmp_path):
    """npm's global prefix is asked for only when the cheap search found nothing, at most
    once per discovery, and a CLI under that prefix is then found."""
    asked: list[str | None] = []
    prefix = tmp_path / "npm-prefix"
    _exe(prefix / "bin" / "gemini")
    _exe(tmp_path / "bin" / "codex")

    def ask(path):
        asked.append(path)
        return str(prefix)

    d = CliDiscovery({}, home="", checkout=None, ask_npm=ask)
    path = str(tmp_path / "bin")
    assert d.locate("codex", path=path, ask_npm=True).path is not None
    assert asked == []
    found = d.locate("gemini", path=path, ask_npm=True)
    assert (found.path, found.source) == (str(prefix / "bin" / "gemini"), "npm global bin")
    assert d.locate("claude", path=path, ask_npm=True).path is None
    assert asked == [path]


def test_configured_command_is_used_as_given(tmp_path):
    """`backends.<name>.command` is resolved on PATH (or as a path) and never searched for;
    a missing one says which setting to fix."""
    cli = _exe(tmp_path / "bin" / "my-claude")
    d = CliDiscovery({}, home="", checkout=None, ask_npm=lambda p: None)
    found = d.locate_command("claude", "my-claude", path=str(cli.parent))
    assert (found.path, found.source) == (str(cli), "config")
    missing = d.locate_command("claude", "nope", path=str(cli.parent))
    assert missing.path is None
    assert "backends.claude.command 'nope' not found" in (missing.problem or "")
    stub = _exe(tmp_path / "bin" / "stub", b"not a program")
    assert "placeholder" in (d.locate_command("claude", str(stub), path="").problem or "")


def _runner(tmp_path: Path, **backends: BackendConfig) -> SubprocessBackendRunner:
    config = Config(backends=dict(backends))
    discovery = CliDiscovery(
        {"PATH": ""}, home=str(tmp_path / "home"), checkout=None, ask_npm=lambda p: None
    )
    return SubprocessBackendRunner(config, discovery=discovery)


def test_runner_uses_discovery_and_reports_path(tmp_path):
    """An unconfigured backend found by discovery is available, with its path in its info;
    one found nowhere is unavailable and a run says why."""
    codex = _exe(tmp_path / "home" / ".local" / "bin" / "codex")
    runner = _runner(tmp_path)
    info = runner.info("codex")
    assert (info.available, info.path, info.version) == (True, str(codex), None)
    assert runner.info("gemini").available is False
    spec = RunSpec(backend="gemini", prompt="hi", workdir=str(tmp_path))
    with pytest.raises(BackendUnavailable, match="gemini not found in"):
        anyio.run(runner.run, spec)


def test_a_cli_installed_while_the_server_runs_becomes_available(tmp_path):
    """A backend that was missing is searched again, so installing its CLI later is enough."""
    runner = _runner(tmp_path)
    assert runner.info("gemini").available is False
    _exe(tmp_path / "home" / ".local" / "bin" / "gemini")
    assert runner.info("gemini").available is True


def test_disabled_backend_is_reported_as_such(tmp_path):
    """A backend disabled in config is unavailable with that reason, whatever is installed."""
    _exe(tmp_path / "home" / ".local" / "bin" / "codex")
    runner = _runner(tmp_path, codex=BackendConfig(enabled=False))
    found = runner.locate("codex")
    assert (found.path, found.problem) == (None, "disabled in config")


def _collect(runner: SubprocessBackendRunner, expected: int) -> dict[str, tuple]:
    reports: dict[str, tuple] = {}
    done = threading.Event()

    def on_report(found, version, error):
        reports[found.name] = (found, version, error)
        if len(reports) == expected:
            done.set()

    runner.probe_versions(on_report)
    assert done.wait(60), reports  # guards against a hang only
    return reports


def test_versions_are_probed_once_and_show_in_info(tmp_path):
    """probe_versions runs each found CLI's `--version` and reports every backend: found ones
    with their version (then in info), missing ones with their problem and hint."""
    _exe(tmp_path / "home" / ".local" / "bin" / "codex", "#!/bin/sh\necho codex-cli 9.8.7\n")
    _exe(tmp_path / "home" / ".local" / "bin" / "gemini", "#!/bin/sh\necho broken >&2\nexit 3\n")
    runner = _runner(tmp_path)
    reports = _collect(runner, 3)
    assert reports["codex"][1:] == ("9.8.7", None)
    assert runner.info("codex").version == "9.8.7"
    assert reports["gemini"][1] is None and "exited with 3: broken" in reports["gemini"][2]
    claude = reports["claude"][0]
    assert claude.path is None and "npm install -g @anthropic-ai/claude-code" in claude.hint


def test_version_probe_gets_no_backend_environment(tmp_path):
    """The `--version` probe runs with the server's base environment, not the backend's
    configured one (a version needs no secrets, and must not pass for a backend run)."""
    script = '#!/bin/sh\nif [ -n "$SECRET_FOR_CLI" ]; then echo 2.0.0; else echo 1.0.0; fi\n'
    _exe(tmp_path / "home" / ".local" / "bin" / "codex", script)
    runner = _runner(tmp_path, codex=BackendConfig(env={"SECRET_FOR_CLI": "x"}))
    assert _collect(runner, 3)["codex"][1] == "1.0.0"


def test_a_silent_cli_times_out_and_close_ends_running_probes(tmp_path):
    """A `--version` that never answers is reported as such after the timeout, and close()
    kills probes still running without reporting them."""
    hang = _exe(tmp_path / "hang", "#!/bin/sh\nexec sleep 600\n")
    probes = VersionProbes()
    results: list[tuple] = []
    ended = threading.Event()

    def done(version, error):
        results.append((version, error))
        ended.set()

    probes.start(str(hang), dict(os.environ), done, timeout=0.2)
    assert ended.wait(60)
    assert results[0][0] is None and "gave no answer within 0.2 s" in results[0][1]

    started = threading.Event()
    probes.start(str(hang), dict(os.environ), done, timeout=600, on_start=started.set)
    assert started.wait(60)
    probes.close()
    thread = probes.start(str(hang), dict(os.environ), done)  # after close: never runs
    for t in threading.enumerate():
        if t.name.startswith("clinvk-version:"):
            t.join(60)
    assert not thread.is_alive()
    assert len(results) == 1
