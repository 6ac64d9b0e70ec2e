"""Resource faults of a CLI run, named: a workdir that vanished, a CLI killed outright.

A CLI that fails for a reason outside itself often says nothing useful (killed by SIGKILL it
says nothing at all), so the runner asks here what the client should be told instead.
"""

from __future__ import annotations

import os
import signal

from clinvk.domain.errors import BackendFailed, BackendUnavailable, ClinvkError


def start_failure(backend: str, exe: str, workdir: str, exc: OSError) -> ClinvkError:
    """The error for a CLI that could not be started."""
    if exc.filename == workdir or not os.path.isdir(workdir):
        return BackendFailed(
            backend,
            f"the run's workdir {workdir} does not exist (any more): it was deleted or moved; "
            "a session continues only in its own workdir",
        )
    return BackendUnavailable(backend, f"cannot start {exe}: {exc.strerror}")


def explain_failure(exc: BackendFailed, exit_code: int, workdir: str) -> BackendFailed | None:
    """A clearer error for a failed run whose cause lies outside the CLI, or None."""
    if exit_code < 0:
        try:
            name = signal.Signals(-exit_code).name
        except ValueError:
            name = f"signal {-exit_code}"
        message = f"{exc.backend} was killed by {name}"
        if -exit_code == signal.SIGKILL:
            message += (
                " (not by clinvk: the system's out-of-memory killer ends processes this way, "
                "as does `kill -9`)"
            )
        return BackendFailed(exc.backend, message, exit_code=exit_code, result=exc.result)
    if not os.path.isdir(workdir):
        return BackendFailed(
            exc.backend,
            f"the run's workdir {workdir} was deleted while {exc.backend} ran: {exc.message}",
            exit_code=exc.exit_code,
            result=exc.result,
        )
    return None
