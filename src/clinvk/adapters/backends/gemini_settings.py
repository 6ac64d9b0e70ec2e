"""gemini settings for one run, without touching the user's own settings files.

gemini 0.61.0 takes settings only from files; the one layer that overrides the user's and
the project's settings is the *system settings* file, whose path `GEMINI_CLI_SYSTEM_SETTINGS_PATH`
can name. So a run that needs a setting (the retry budget, `general.maxAttempts`) gets a
system settings file of its own: what the user's system settings file holds (if gemini
would read it), with clinvk's values merged over it. One file per distinct content, in a
private folder (named after the server's pid) removed when the server exits, or by the next
server when the last one was stopped by a signal.

gemini skips a system settings file unless root owns it and every folder above it, and
none of them is writable by group or others (the check in its settings loader). So this
only works when clinvk runs as root; otherwise `path` answers None and `problem` says why.
"""

from __future__ import annotations

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
