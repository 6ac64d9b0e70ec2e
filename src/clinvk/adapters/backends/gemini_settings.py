"""gemini settings for one run, without touching the user's own settings files.

gemini 0.61.0 takes settings only from files; the one layer that overrides the user's and
the project's settings is the *system settings* file, whose path `GEMINI_CLI_SYSTEM_SETTINGS_PATH`
can name. So a run that needs a setting (the retry budget, `general.maxAttempts`) gets a
system settings file of its own: what the user's system settings file holds (if gemini
would read it), with clinvk's values merged over it. One file per distinct content, in a
private folder (named after the server's pid) removed when the server exits, or by the next
server when the last one was stopped by a signal.

gemini skips a system settings file unless root owns it and every folder above it, and
none of them is writable by group or others (the check in its settings loader). So that
layer only works when clinvk runs as root. Otherwise (`HomeOverlays`) the run gets a home
of its own through `GEMINI_CLI_HOME`: a `.gemini` folder whose `settings.json` is the
user's with clinvk's values merged over it, and whose every other entry is a symbolic link
to the user's real `.gemini` (chats, history, credentials), so sessions, logins and
project ids stay where the user's own gemini finds them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import stat
import sys
import tempfile
import weakref
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

SYSTEM_SETTINGS_ENV = "GEMINI_CLI_SYSTEM_SETTINGS_PATH"

_DEFAULT_SYSTEM_SETTINGS = {
    "darwin": "/Library/Application Support/GeminiCli/settings.json",
    "win32": r"C:\ProgramData\gemini-cli\settings.json",
}
_LINUX_SYSTEM_SETTINGS = "/etc/gemini-cli/settings.json"


def default_system_settings() -> str:
    """Where gemini looks for system settings when the variable is not set."""
    return _DEFAULT_SYSTEM_SETTINGS.get(sys.platform, _LINUX_SYSTEM_SETTINGS)


def trusted_by_gemini(path: str, *, lstat: Callable[[str], os.stat_result] = os.lstat) -> bool:
    """Whether gemini would read a system settings file at `path`: it and every folder
    above it are owned by root and writable by no group or other user. (A missing file
    counts as trusted: gemini reads nothing from it.)"""
    current = os.path.abspath(path)
    while True:
        try:
            info = lstat(current)
        except FileNotFoundError:
            return current == os.path.abspath(path)  # a missing file holds nothing
        except OSError:
            return False
        if stat.S_ISLNK(info.st_mode):
            if info.st_uid != 0:
                return False
            try:
                info = os.stat(current)
            except OSError:
                return False
        if info.st_uid != 0 or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            return False
        parent = os.path.dirname(current)
        if parent == current:
            return True
        current = parent


def merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """`over` merged into `base`, objects key by key (as gemini merges its layers)."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def strip_json_comments(text: str) -> str:
    """JSON with `//` and `/* */` comments removed (gemini reads its settings so)."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append(text[i : j + 1])
            i = j + 1
        elif text.startswith("//", i):
            end = text.find("\n", i)
            i = n if end < 0 else end
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            i = n if end < 0 else end + 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


_FOLDER_PREFIX = "clinvk-gemini-"
_FOLDER = re.compile(rf"^{_FOLDER_PREFIX}(\d+)-")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _sweep(base: str) -> None:
    """Remove the overlay folders of clinvk processes that are gone (killed, or stopped by
    a signal, which skips exit handlers)."""
    try:
        names = os.listdir(base)
    except OSError:
        return
    for name in names:
        match = _FOLDER.match(name)
        if match is not None and not _alive(int(match.group(1))):
            shutil.rmtree(os.path.join(base, name), ignore_errors=True)


def _candidate_dirs() -> list[str]:
    home = os.path.expanduser("~")
    dirs = [os.environ.get("XDG_RUNTIME_DIR", ""), os.path.join(home, ".cache"), home]
    return [d for d in dirs if d and os.path.isdir(d)] + [tempfile.gettempdir()]


class SettingsOverlays:
    """Writes (once per distinct content) the system settings files gemini runs get."""

    def __init__(self, candidates: Callable[[], list[str]] = _candidate_dirs) -> None:
        self._candidates = candidates
        self._folder: str | None = None
        #: Why the last `path` call answered None.
        self.problem: str | None = None

    def _home(self) -> str | None:
        if self._folder is not None:
            return self._folder
        for base in self._candidates():
            if trusted_by_gemini(base):
                _sweep(base)
                prefix = f"{_FOLDER_PREFIX}{os.getpid()}-"
                self._folder = tempfile.mkdtemp(prefix=prefix, dir=base)
                # Removed at a normal exit; a server stopped by a signal leaves it for the
                # next one to sweep.
                weakref.finalize(self, shutil.rmtree, self._folder, ignore_errors=True)
                return self._folder
        return None

    def path(self, settings: Mapping[str, Any], env: Mapping[str, str]) -> str | None:
        """A system settings file holding the user's system settings with `settings`
        merged over them (`env`: the backend's configured environment, which may name
        the user's file); None when gemini would not read one from us (see `problem`)."""
        self.problem = None
        user_file = env.get(SYSTEM_SETTINGS_ENV) or os.environ.get(SYSTEM_SETTINGS_ENV)
        user_file = user_file or default_system_settings()
        base: dict[str, Any] = {}
        if trusted_by_gemini(user_file) and os.path.isfile(user_file):
            try:
                loaded = json.loads(strip_json_comments(Path(user_file).read_text()))
            except (OSError, ValueError) as exc:
                self.problem = f"cannot read the system settings file {user_file}: {exc}"
                return None
            base = loaded if isinstance(loaded, dict) else {}
        folder = self._home()
        if folder is None:
            self.problem = (
                "gemini reads a settings override only from a file that root owns in folders "
                "only root can write, and clinvk does not run as root"
                if getattr(os, "geteuid", lambda: 0)() != 0
                else "no folder gemini would trust for a settings override was found"
            )
            return None
        content = json.dumps(merge(base, settings), sort_keys=True, indent=2).encode()
        name = f"system-settings-{hashlib.sha256(content).hexdigest()[:16]}.json"
        target = os.path.join(folder, name)
        if not os.path.exists(target):
            fd, temp = tempfile.mkstemp(dir=folder, suffix=".tmp")
            with os.fdopen(fd, "wb") as f:
                f.write(content)
            os.replace(temp, target)
        return target


#: Files gemini writes at the top of its `.gemini` folder. In a home overlay each is a link
#: to the user's real file (a dangling one until gemini first writes it, which then lands
#: in the real folder). gemini replaces some of them by renaming a temporary file over
#: them (projects.json, trustedFolders.json), which puts a real file in the overlay
#: instead; the next run moves it back over the user's file and links it again.
HOME_FILES = (
    "projects.json",
    "trustedFolders.json",
    "state.json",
    "installation_id",
    "user_id",
    "google_accounts.json",
    "oauth_creds.json",
    "mcp-oauth-tokens.json",
)
#: Folders gemini creates on first use; made in the real folder so the links resolve.
HOME_DIRS = ("tmp", "history")
HOME_ENV = "GEMINI_CLI_HOME"


def real_gemini_dir(env: Mapping[str, str], environ: Mapping[str, str] = os.environ) -> str:
    """The `.gemini` folder the CLI would use with `env` (its configured environment)."""
    home = env.get(HOME_ENV) or environ.get(HOME_ENV)
    home = home or env.get("HOME") or environ.get("HOME") or os.path.expanduser("~")
    return os.path.join(home, ".gemini")


def _link(target: str, link: str) -> None:
    """`link` -> `target`, replacing whatever `link` was (atomically)."""
    if os.path.islink(link) and os.readlink(link) == target:
        return
    temp = f"{link}.{os.getpid()}.link"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(temp)
    os.symlink(target, temp)
    os.replace(temp, link)


def _settle(overlay: str, real: str) -> None:
    """Move the files gemini wrote into `overlay` (by a rename over a link) back over the
    user's own, then link them again."""
    for name in HOME_FILES:
        here = os.path.join(overlay, name)
        if os.path.isfile(here) and not os.path.islink(here):
            there = os.path.join(real, name)
            try:
                os.replace(here, there)
            except OSError:  # another file system: copy beside, then rename
                fd, temp = tempfile.mkstemp(dir=real, prefix=f".{name}.", suffix=".tmp")
                os.close(fd)
                shutil.copy2(here, temp)
                os.replace(temp, there)
                os.unlink(here)
        _link(os.path.join(real, name), here)


class HomeOverlays:
    """gemini homes (`GEMINI_CLI_HOME`) whose settings carry clinvk's values over the
    user's own, for servers that cannot use the system settings layer (not root)."""

    def __init__(self, candidates: Callable[[], list[str]] = _candidate_dirs) -> None:
        self._candidates = candidates
        self._folder: str | None = None
        #: Why the last `path` call answered None.
        self.problem: str | None = None

    def _home(self) -> str | None:
        if self._folder is not None:
            return self._folder
        for base in self._candidates():
            if os.access(base, os.W_OK | os.X_OK):
                _sweep(base)
                prefix = f"{_FOLDER_PREFIX}{os.getpid()}-home-"
                self._folder = tempfile.mkdtemp(prefix=prefix, dir=base)
                weakref.finalize(self, _remove_homes, self._folder)
                return self._folder
        return None

    def path(self, settings: Mapping[str, Any], env: Mapping[str, str]) -> str | None:
        """A home whose `.gemini/settings.json` holds the user's settings with `settings`
        merged over them; None when none can be made (see `problem`)."""
        self.problem = None
        real = real_gemini_dir(env)
        user_file = os.path.join(real, "settings.json")
        base: dict[str, Any] = {}
        try:
            os.makedirs(real, mode=0o700, exist_ok=True)
            for name in HOME_DIRS:
                os.makedirs(os.path.join(real, name), mode=0o700, exist_ok=True)
            if os.path.isfile(user_file):
                loaded = json.loads(strip_json_comments(Path(user_file).read_text()))
                base = loaded if isinstance(loaded, dict) else {}
        except (OSError, ValueError) as exc:
            self.problem = f"cannot read gemini's settings in {real}: {exc}"
            return None
        folder = self._home()
        if folder is None:
            self.problem = "no writable folder for a gemini home overlay was found"
            return None
        content = json.dumps(merge(base, settings), sort_keys=True, indent=2).encode()
        key = hashlib.sha256(os.fsencode(real) + b"\0" + content).hexdigest()[:16]
        home = os.path.join(folder, key)
        overlay = os.path.join(home, ".gemini")
        try:
            os.makedirs(overlay, mode=0o700, exist_ok=True)
            target = os.path.join(overlay, "settings.json")
            if not os.path.isfile(target) or os.path.islink(target):
                fd, temp = tempfile.mkstemp(dir=overlay, suffix=".tmp")
                with os.fdopen(fd, "wb") as f:
                    f.write(content)
                os.replace(temp, target)
            _settle(overlay, real)
            for name in os.listdir(real):
                if name != "settings.json" and name not in HOME_FILES:
                    here = os.path.join(overlay, name)
                    if not os.path.lexists(here) or os.path.islink(here):
                        _link(os.path.join(real, name), here)
        except OSError as exc:
            self.problem = f"cannot prepare a gemini home overlay in {folder}: {exc}"
            return None
        return home


def _remove_homes(folder: str) -> None:
    """At exit: move what gemini wrote back to the users' folders, then remove the homes."""
    with contextlib.suppress(OSError):
        for key in os.listdir(folder):
            overlay = os.path.join(folder, key, ".gemini")
            with contextlib.suppress(OSError):
                target = os.readlink(os.path.join(overlay, HOME_DIRS[0]))
                _settle(overlay, os.path.dirname(target))
    shutil.rmtree(folder, ignore_errors=True)
