"""API keys for the server: from `CLINVK_API_KEYS` and/or a gopass secret.

A configured gopass path that cannot be read stops the server with a clear message: an
operator who asked for keys must never get an open server instead. Key values are never
put in an error message or a log line.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Mapping

ENV_VAR = "CLINVK_API_KEYS"
#: Seconds to wait for gopass (it may need the GPG agent); a hang must not stall start-up.
GOPASS_TIMEOUT_SECS = 30

Run = Callable[..., subprocess.CompletedProcess]


class SecretsError(RuntimeError):
    """API keys were asked for but could not be loaded."""


def split_keys(text: str) -> list[str]:
    """Keys from a comma-separated list, blanks dropped, order kept, duplicates removed."""
    keys: list[str] = []
    for part in text.split(","):
        key = part.strip()
        if key and key not in keys:
            keys.append(key)
    return keys


def gopass_keys(path: str, *, run: Run = subprocess.run, gopass: str | None = None) -> list[str]:
    """The keys stored in the gopass secret at `path` (its password line, comma-separated).

    Only the password line is read (`gopass show --password`), so the secret's other
    lines (notes, `key: value` metadata) can never become keys.
    """
    exe = gopass or shutil.which("gopass")
    if exe is None:
        raise SecretsError(
            f"server.api_keys_gopass_path is set ({path!r}) but the gopass command is not "
            "installed; install gopass or unset the path"
        )
    try:
        done = run(
            [exe, "show", "--password", path],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=GOPASS_TIMEOUT_SECS,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise SecretsError(
            f"gopass did not answer within {GOPASS_TIMEOUT_SECS} s for {path!r}"
        ) from None
    except OSError as exc:
        raise SecretsError(f"cannot run gopass: {exc.strerror}") from None
    if done.returncode != 0:
        reason = _first_line(done.stderr) or f"exit code {done.returncode}"
        raise SecretsError(f"gopass show {path!r} failed: {reason}")
    keys = split_keys(_first_line(done.stdout))
    if not keys:
        raise SecretsError(f"gopass secret {path!r} holds no API key")
    return keys


def load_api_keys(
    environ: Mapping[str, str], gopass_path: str, *, run: Run = subprocess.run,
    gopass: str | None = None,
) -> list[str]:
    """Every configured API key (environment first, then gopass); empty = auth off."""
    keys = split_keys(environ.get(ENV_VAR, ""))
    if gopass_path:
        keys += [k for k in gopass_keys(gopass_path, run=run, gopass=gopass) if k not in keys]
    return keys


def _first_line(output: bytes | str | None) -> str:
    if not output:
        return ""
    text = output.decode("utf-8", "replace") if isinstance(output, bytes) else output
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return ""
