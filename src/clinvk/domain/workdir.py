"""Workdir policy: which directories a request may run a CLI in."""

from __future__ import annotations

import os

from clinvk.domain.errors import InvalidRequest, WorkdirForbidden


def _inside(path: str, prefix: str) -> bool:
    prefix = os.path.normpath(prefix)
    return path == prefix or path.startswith(prefix.rstrip("/") + "/")


def resolve_workdir(path: str, *, allowed: list[str], blocked: list[str]) -> str:
    """Return the real path of `path`, or raise when it is unusable or not allowed.

    Symlinks are resolved before the prefix checks, so a link inside an allowed folder
    that points at a blocked one is refused.
    """
    if "\x00" in path:  # os.path would raise ValueError, not refuse it
        raise InvalidRequest("workdir must not contain a NUL character", field="workdir")
    if not os.path.isabs(path):
        raise InvalidRequest(f"workdir must be an absolute path, got {path!r}", field="workdir")
    real = os.path.realpath(path)
    if not os.path.exists(real):
        raise InvalidRequest(f"workdir {path!r} does not exist", field="workdir")
    if not os.path.isdir(real):
        raise InvalidRequest(f"workdir {path!r} is not a directory", field="workdir")
    for prefix in blocked:
        if _inside(real, os.path.realpath(prefix)) or _inside(real, prefix):
            raise WorkdirForbidden(f"workdir {real!r} is inside the blocked prefix {prefix!r}")
    if allowed and not any(_inside(real, os.path.realpath(p)) for p in allowed):
        raise WorkdirForbidden(
            f"workdir {real!r} is outside the allowed prefixes ({', '.join(allowed)})"
        )
    return real
