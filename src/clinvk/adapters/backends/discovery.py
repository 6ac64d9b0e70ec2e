"""Where the backend CLIs are installed: the search order, npm's placeholder, versions, hints.

A CLI whose `backends.<name>.command` is not configured is looked for where its installers
put it, first hit wins:

1. `PATH` (the backend's `env.PATH` when configured, else the server's);
2. npm's global bin: `$NPM_CONFIG_PREFIX/bin`, the `prefix=` of `~/.npmrc`,
   `~/.npm-global/bin`, and (only when nothing else found the CLI, once per process)
   what `npm prefix -g` answers;
3. the per-user install folders: claude's native installer (`~/.claude/local`,
   `~/.local/bin`), Volta, Bun, pnpm, nvm's current node (`$NVM_BIN`), Homebrew and
   `/usr/local/bin`;
4. the project's own cache: `$CLINVK_CLI_DIR` and `.cache/clis` of the source checkout,
   where `scripts/install-clis.sh` puts the pinned versions.

The core (`search_dirs`, `candidates`, `locate`, `is_placeholder`, `parse_version`, the
hints) works on values only; `CliDiscovery` and `VersionProbes` are the thin shell that
looks at the disk and runs processes.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import msgspec

#: What `npm install -g` takes for each CLI.
NPM_PACKAGES = {
    "claude": "@anthropic-ai/claude-code",
    "codex": "@openai/codex",
    "gemini": "@google/gemini-cli",
}

#: The versions scripts/install-clis.sh installs and the real-CLI tests run (a unit test
#: keeps the two lists equal).
PINNED_VERSIONS = {"claude": "2.1.197", "codex": "0.169.0", "gemini": "0.61.0"}

#: How long `npm prefix -g` and `<cli> --version` may take before we stop waiting.
NPM_TIMEOUT_SECS = 5.0
VERSION_TIMEOUT_SECS = 20.0

#: First bytes of files the kernel (or macOS) can execute: ELF, a `#!` script, Mach-O.
_EXECUTABLE_MAGIC = (
    b"\x7fELF",
    b"#!",
    b"\xfe\xed\xfa\xce",
    b"\xfe\xed\xfa\xcf",
    b"\xce\xfa\xed\xfe",
    b"\xcf\xfa\xed\xfe",
    b"\xca\xfe\xba\xbe",
)

_VERSION_RE = re.compile(r"(?<![\w.])v?(\d+\.\d+\.\d+(?:[-+][0-9A-Za-z][0-9A-Za-z.+-]*)?)")

Probe = Callable[[str], str]
"""path -> "ok", "missing" or "placeholder"."""


class Candidate(msgspec.Struct, frozen=True, kw_only=True):
    """One place a CLI may be, and which installer's folder it is."""

    path: str
    source: str


class CliLocation(msgspec.Struct, frozen=True, kw_only=True):
    """What the search found for one backend: a usable path, or why not and how to fix it."""

    name: str
    path: str | None = None
    #: Where it was found ("PATH", "npm global bin", "project CLI cache", "config" ...).
    source: str | None = None
    #: Why there is no usable path (not found, npm's placeholder, disabled).
    problem: str | None = None
    #: How to install or configure it.
    hint: str | None = None


# ---------------------------------------------------------------------------------------
# The pure core.


def checkout_root() -> Path | None:
    """The source checkout clinvk runs from (editable install), or None for an installed wheel."""
    root = Path(__file__).resolve().parents[4]
    return root if (root / "scripts" / "install-clis.sh").is_file() else None


def project_dirs(environ: Mapping[str, str], checkout: Path | None) -> list[str]:
    """The project's own CLI folders: `$CLINVK_CLI_DIR`, then the checkout's `.cache/clis`."""
    dirs = []
    if environ.get("CLINVK_CLI_DIR"):
        dirs.append(os.path.join(environ["CLINVK_CLI_DIR"], "node_modules", ".bin"))
    if checkout is not None:
        dirs.append(str(checkout / ".cache" / "clis" / "node_modules" / ".bin"))
    return dirs


def npmrc_prefix(text: str, home: str) -> str | None:
    """The `prefix=` setting of an `.npmrc` file's text (`~` and `${HOME}` expanded)."""
    prefix = None
    for line in text.splitlines():
        key, eq, value = line.strip().partition("=")
        if eq and key.strip() == "prefix":
            prefix = value.strip().strip("\"'")
    if not prefix:
        return None
    prefix = prefix.replace("${HOME}", home).replace("$HOME", home)
    return home + prefix[1:] if prefix.startswith("~") else prefix


def search_dirs(
    environ: Mapping[str, str],
    home: str,
    *,
    npmrc: str | None = None,
    npm_prefix: str | None = None,
    project: Sequence[str] = (),
) -> list[Candidate]:
    """Every folder a CLI may be in, in search order (see the module docstring), no repeats.

    `npmrc` is the `prefix=` of `~/.npmrc`; `npm_prefix` what `npm prefix -g` answered.
    """
    dirs: list[tuple[str, str]] = []
    dirs += [(d, "PATH") for d in environ.get("PATH", "").split(os.pathsep) if d]
    for prefix in (
        environ.get("NPM_CONFIG_PREFIX"),
        environ.get("npm_config_prefix"),
        npmrc,
    ):
        if prefix:
            dirs.append((os.path.join(prefix, "bin"), "npm global bin"))
    if home:
        dirs.append((os.path.join(home, ".npm-global", "bin"), "npm global bin"))
    if npm_prefix:
        dirs.append((os.path.join(npm_prefix, "bin"), "npm global bin"))
    if home:
        dirs += [
            (os.path.join(home, ".local", "bin"), "~/.local/bin"),
            (os.path.join(environ.get("VOLTA_HOME") or os.path.join(home, ".volta"), "bin"),
             "Volta"),
            (os.path.join(environ.get("BUN_INSTALL") or os.path.join(home, ".bun"), "bin"),
             "Bun"),
            (environ.get("PNPM_HOME") or os.path.join(home, ".local", "share", "pnpm"), "pnpm"),
        ]
    if environ.get("NVM_BIN"):
        dirs.append((environ["NVM_BIN"], "nvm"))
    dirs += [("/opt/homebrew/bin", "Homebrew"), ("/usr/local/bin", "/usr/local/bin")]
    dirs += [(d, "project CLI cache") for d in project]
    seen: set[str] = set()
    out = []
    for d, source in dirs:
        key = os.path.normpath(d)
        if os.path.isabs(key) and key not in seen:  # a relative PATH entry is a trap
            seen.add(key)
            out.append(Candidate(path=key, source=source))
    return out


def candidates(name: str, dirs: Sequence[Candidate], home: str) -> list[Candidate]:
    """The executables to try for CLI `name`: `<dir>/<name>` for each folder, plus the
    installer-specific file paths (claude's native installer keeps `~/.claude/local/claude`)."""
    out = [Candidate(path=os.path.join(d.path, name), source=d.source) for d in dirs]
    if name == "claude" and home:
        native = Candidate(
            path=os.path.join(home, ".claude", "local", "claude"),
            source="claude's native installer",
        )
        # Right after npm's folders, before the generic per-user ones.
        at = next((i for i, c in enumerate(out) if c.source == "~/.local/bin"), len(out))
        out.insert(at, native)
    return out


def is_placeholder(head: bytes) -> bool:
    """Whether a file starting with `head` cannot be executed: claude's npm package ships a
    stub that its postinstall replaces with the native binary; without the postinstall
    (`--ignore-scripts`) the stub stays, and exec fails with "Exec format error"."""
    return not head.startswith(_EXECUTABLE_MAGIC)


def parse_version(text: str) -> str | None:
    """The first `x.y.z` version in a CLI's `--version` output ("codex-cli 0.169.0")."""
    match = _VERSION_RE.search(text)
    return match.group(1) if match else None


def install_hint(name: str, *, checkout: Path | None) -> str:
    """How to install a missing CLI or point clinvk at it."""
    ways = [f"`npm install -g {NPM_PACKAGES.get(name, name)}`"]
    if checkout is not None:
        ways.append(f"`./scripts/install-clis.sh` in {checkout} (the pinned, tested versions)")
    ways.append(f"set `backends.{name}.command` in the config to its path")
    return "install it with " + ", or ".join(ways)


def placeholder_hint(name: str, installer: str | None) -> str:
    """How to turn npm's placeholder into the real CLI."""
    run = f"run `node {installer}`, or " if installer else ""
    package = NPM_PACKAGES.get(name, name)
    return f"{run}reinstall without --ignore-scripts: `npm install -g {package}`"


def locate(
    name: str,
    tries: Sequence[Candidate],
    probe: Probe,
    *,
    hint: str,
    installer_of: Callable[[str], str | None] = lambda path: None,
) -> CliLocation:
    """The first candidate `probe` calls "ok"; else why nothing is usable, with a hint.

    A placeholder is skipped (a later real install still wins) but named when nothing else
    is found, since "not installed" would then be misleading.
    """
    placeholder: Candidate | None = None
    for c in tries:
        status = probe(c.path)
        if status == "ok":
            return CliLocation(name=name, path=c.path, source=c.source)
        if status == "placeholder" and placeholder is None:
            placeholder = c
    if placeholder is not None:
        return CliLocation(
            name=name,
            problem=f"{placeholder.path} is npm's placeholder, not the CLI (its install "
            "script did not run)",
            hint=placeholder_hint(name, installer_of(placeholder.path)),
        )
    sources = list(dict.fromkeys(c.source for c in tries))
    return CliLocation(
        name=name, problem=f"{name} not found in " + ", ".join(sources), hint=hint
    )


# ---------------------------------------------------------------------------------------
# The shell: the disk, npm, `--version`.


def probe_file(path: str) -> str:
    """Whether `path` is an executable program ("ok"), npm's stub ("placeholder") or "missing"."""
    try:
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            return "missing"
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError:
        return "missing"
    return "placeholder" if is_placeholder(head) else "ok"


def _installer_of(path: str) -> str | None:
    """claude's `install.cjs` next to the placeholder's package, if there is one."""
    script = Path(path).resolve().parent.parent / "install.cjs"
    return str(script) if script.is_file() else None


def ask_npm_prefix(path: str | None) -> str | None:
    """`npm prefix -g`, or None when npm is missing, fails or is slow."""
    npm = shutil.which("npm", path=path)
    if npm is None:
        return None
    try:
        proc = subprocess.run(
            [npm, "prefix", "-g"],
            capture_output=True,
            text=True,
            timeout=NPM_TIMEOUT_SECS,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    prefix = proc.stdout.strip()
    return prefix if proc.returncode == 0 and os.path.isabs(prefix) else None


_FIND = object()


class CliDiscovery:
    """Finds each CLI on this machine (see the module docstring)."""

    def __init__(
        self,
        environ: Mapping[str, str] | None = None,
        *,
        home: str | None = None,
        checkout: Path | None | object = _FIND,
        ask_npm: Callable[[str | None], str | None] = ask_npm_prefix,
    ) -> None:
        """`environ` and `home` default to this process's; `checkout` to the source checkout
        clinvk runs from (None: no checkout)."""
        self._environ = dict(os.environ if environ is None else environ)
        self._home = home if home is not None else self._environ.get("HOME", "")
        self._checkout: Path | None = (
            checkout_root() if checkout is _FIND else checkout  # type: ignore[assignment]
        )
        self._ask_npm = ask_npm
        self._npm_prefix: str | None = None
        self._asked_npm = False

    def _npmrc(self) -> str | None:
        if not self._home:
            return None
        try:
            text = Path(self._home, ".npmrc").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return None
        return npmrc_prefix(text, self._home)

    def _search(self, name: str, path: str | None, project_first: bool = False) -> CliLocation:
        environ = {**self._environ, "PATH": path if path is not None else ""}
        project = project_dirs(self._environ, self._checkout)
        dirs = search_dirs(
            environ,
            self._home,
            npmrc=self._npmrc(),
            npm_prefix=self._npm_prefix,
            project=project,
        )
        if project_first:
            first = {os.path.normpath(d) for d in project}
            dirs.sort(key=lambda c: c.path not in first)
        return locate(
            name,
            candidates(name, dirs, self._home),
            probe_file,
            hint=install_hint(name, checkout=self._checkout),
            installer_of=_installer_of,
        )

    def locate(
        self, name: str, *, path: str | None, ask_npm: bool = False, project_first: bool = False
    ) -> CliLocation:
        """Where CLI `name` is, searching `path` (a PATH value) first.

        With `ask_npm`, a CLI found nowhere else makes us ask npm for its global prefix,
        once per process (npm takes a few hundred milliseconds to start). `project_first`
        prefers the project's pinned CLIs (the demo's settings are tested with those).
        """
        found = self._search(name, path, project_first)
        if found.path is None and ask_npm and not self._asked_npm:
            self._asked_npm = True
            self._npm_prefix = self._ask_npm(path)
            if self._npm_prefix is not None:
                found = self._search(name, path, project_first)
        return found

    @property
    def checkout(self) -> Path | None:
        """The source checkout clinvk runs from, if any (it has scripts/install-clis.sh)."""
        return self._checkout

    def locate_command(self, name: str, command: str, *, path: str | None) -> CliLocation:
        """Where the configured `backends.<name>.command` is (a path, or a name on PATH)."""
        exe = shutil.which(command, path=path)
        status = probe_file(exe) if exe is not None else "missing"
        if status == "ok":
            return CliLocation(name=name, path=exe, source="config")
        if status == "placeholder":
            assert exe is not None
            return CliLocation(
                name=name,
                problem=f"{exe} (backends.{name}.command) is npm's placeholder, not the CLI",
                hint=placeholder_hint(name, _installer_of(exe)),
            )
        return CliLocation(
            name=name,
            problem=f"backends.{name}.command {command!r} not found",
            hint=f"fix `backends.{name}.command`, or remove it to let clinvk search; "
            + install_hint(name, checkout=self._checkout),
        )


class VersionProbes:
    """Runs `<cli> --version` in background threads (it takes seconds for gemini), each in its
    own process group so `close()` can end any still running at shutdown."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: set[subprocess.Popen] = set()
        self._closed = False

    def start(
        self,
        path: str,
        env: dict[str, str],
        on_done: Callable[[str | None, str | None], None],
        *,
        timeout: float = VERSION_TIMEOUT_SECS,
        on_start: Callable[[], None] | None = None,
    ) -> threading.Thread:
        """Run `path --version` in a thread; call `on_done(version, error)` when it ends
        (never after `close()`), and `on_start()` once the process runs."""
        thread = threading.Thread(
            target=self._run, args=(path, env, on_done, timeout, on_start), daemon=True,
            name=f"clinvk-version:{os.path.basename(path)}",
        )
        thread.start()
        return thread

    def _run(self, path, env, on_done, timeout, on_start) -> None:
        with self._lock:
            if self._closed:
                return
            try:
                proc = subprocess.Popen(
                    [path, "--version"],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    env=env,
                    cwd="/",
                    start_new_session=True,
                )
            except OSError as exc:
                proc, error = None, f"cannot start {path}: {exc.strerror}"
            else:
                self._running.add(proc)
        if proc is None:
            on_done(None, error)
            return
        if on_start is not None:
            on_start()
        try:
            out, _ = proc.communicate(timeout=timeout)
            text = out.decode("utf-8", "replace").strip()
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            proc.communicate()
            text = None
        finally:
            with self._lock:
                self._running.discard(proc)
        if self._closed:
            return
        if text is None:
            on_done(None, f"`{path} --version` gave no answer within {timeout:g} s")
        elif proc.returncode != 0:
            last = text.splitlines()[-1] if text else ""
            on_done(None, f"`{path} --version` exited with {proc.returncode}: {last}")
        elif (version := parse_version(text)) is None:
            on_done(None, f"`{path} --version` printed no version: {text[:200]!r}")
        else:
            on_done(version, None)

    def close(self) -> None:
        """Kill every probe still running; start no new one."""
        with self._lock:
            self._closed = True
            running = list(self._running)
        for proc in running:
            _kill_group(proc)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
