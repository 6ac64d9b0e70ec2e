"""Reading and writing a CLI's own session files (see domain/cli_state.py).

Each backend module says where its CLI keeps one session (`session_files`: a state folder
and glob patterns inside it); this module reads those files after a turn and writes a stored
copy back before a resume. Only files that name the session inside are taken, so a pattern
that matches by an id prefix (gemini) cannot pick up another session's file.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path, PurePosixPath

from clinvk.domain.cli_state import CliFile, CliState

_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")
#: Largest file carried; a session's transcript beyond this stays on its replica.
MAX_FILE_BYTES = 64 * 1024 * 1024


def capture(
    backend: str, root: str, patterns: tuple[str, ...], cli_session_id: str
) -> CliState | None:
    """The session's files under `root` matching `patterns`; None when there are none."""
    if _ID.fullmatch(cli_session_id) is None:
        return None  # an id that could act as a glob or a path is not looked for
    base = Path(root)
    needle = cli_session_id.encode()
    files: list[CliFile] = []
    for pattern in patterns:
        for path in sorted(base.glob(pattern)):
            try:
                if not path.is_file() or path.stat().st_size > MAX_FILE_BYTES:
                    continue
                data = path.read_bytes()
            except OSError:
                continue
            if needle in data:
                files.append(CliFile(path=path.relative_to(base).as_posix(), data=data))
    if not files:
        return None
    return CliState(backend=backend, cli_session_id=cli_session_id, files=files)


def restore(root: str, state: CliState) -> int:
    """Write `state`'s files under `root` where they are missing or hold an older turn;
    return how many were written. The CLIs only append to these files, so a local file that
    already starts with the stored copy is as new or newer (a hot session's CLI may still be
    writing it) and is left alone. Paths that would leave `root` are skipped."""
    written = 0
    base = Path(root)
    for item in state.files:
        relative = PurePosixPath(item.path)
        if relative.is_absolute() or ".." in relative.parts or not relative.parts:
            continue
        target = base.joinpath(*relative.parts)
        try:
            if target.is_file() and target.read_bytes().startswith(item.data):
                continue
            target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd, temp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
            try:
                with os.fdopen(fd, "wb") as file:
                    file.write(item.data)
                os.replace(temp, target)
            except BaseException:
                Path(temp).unlink(missing_ok=True)
                raise
        except OSError:
            continue  # the resume then fails as it would have without the copy
        written += 1
    return written
