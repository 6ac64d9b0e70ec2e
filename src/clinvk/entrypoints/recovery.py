"""Start-up recovery: end what a crashed server left running and mark its sessions."""

from __future__ import annotations

from typing import Any

import anyio.to_thread

from clinvk.domain.errors import ClinvkError
from clinvk.domain.services import Services


async def reap_interrupted_runs(services: Services, log: Any) -> int:
    """End the CLI runs a dead server of this host left behind (verified by pid and start
    time), mark their sessions `error` with the reason, then drop the records; return how
    many runs were found. A store that cannot be written keeps the records for next time."""
    groups = getattr(services.runner, "groups", None)
    registry = getattr(groups, "registry", None)
    if registry is None:
        return 0
    reaped = await anyio.to_thread.run_sync(registry.reap)
    marked = True
    for item in reaped:
        run = item.run
        log.warning(
            "a run of a server that stopped without its shutdown was interrupted",
            backend=run.backend, session_id=run.session_id, pid=run.cli_pid,
            killed=item.killed,
        )
        if run.session_id is None:
            continue
        try:
            await services.sessions.mark_interrupted(run.session_id, item.reason)
        except (ClinvkError, OSError) as exc:
            marked = False
            log.error("cannot mark an interrupted session", session_id=run.session_id,
                      error=getattr(exc, "message", type(exc).__name__))
    if marked:
        await anyio.to_thread.run_sync(registry.clear)
    return len(reaped)
