"""The composition root: the one place that wires adapters to the domain's ports."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

from clinvk.domain.admission import Admission, AdmittingBackendRunner
from clinvk.domain.chain import ChainService
from clinvk.domain.cli_state import PortableCliSessions
from clinvk.domain.compare import CompareService
from clinvk.domain.config import Config
from clinvk.domain.parallel import ParallelService
from clinvk.domain.prompt import PromptService
from clinvk.domain.services import Services
from clinvk.domain.sessions import SessionService
from clinvk.domain.tool_runs import ToolRunService
from clinvk.ports import BackendRunner, Clock, IdGenerator, ImageFetcher, SessionStore
from clinvk.ports.tools import Background, ToolBridge

if TYPE_CHECKING:
    from clinvk.adapters.metrics import Metrics

__all__ = ["Services", "bootstrap"]


def session_store(config: Config, home: str) -> SessionStore:
    """The store `session.store` names: PostgreSQL for a postgresql:// URL, else files."""
    from clinvk.adapters.sessions import postgres_store
    from clinvk.adapters.sessions.file_store import FileSessionStore

    where = config.session.store
    if postgres_store.is_postgres_url(where):
        return postgres_store.PostgresSessionStore(where)
    if where:
        return FileSessionStore(os.path.expanduser(where))
    return FileSessionStore(os.path.join(home, "sessions"))


def bootstrap(
    config: Config | None = None,
    *,
    runner: BackendRunner | None = None,
    store: SessionStore | None = None,
    clock: Clock | None = None,
    ids: IdGenerator | None = None,
    metrics: Metrics | None = None,
    secrets: Sequence[str] = (),
    images: ImageFetcher | None = None,
    tools: ToolBridge | None = None,
    background: Background | None = None,
) -> Services:
    """Build the services; adapters default to the real ones (CLIs, files, system clock).

    With `metrics`, every CLI run is also counted there (runs, failures, durations, tokens).
    `secrets` (the server's API keys) never reach a CLI's environment, whatever the name of
    the variable that holds them. `images` downloads http(s) images when
    `server.fetch_remote_images` is on. `tools` (the client-tools bridge) and `background`
    (where parked runs live) default to the loopback MCP bridge and the running loop.
    """
    from clinvk.adapters.backends.registry import RunRegistry
    from clinvk.adapters.backends.runner import SubprocessBackendRunner
    from clinvk.adapters.background import LoopBackground
    from clinvk.adapters.image_fetch import UrlImageFetcher
    from clinvk.adapters.logging import LoggedBackendRunner
    from clinvk.adapters.mcp_bridge import LoopbackToolBridge
    from clinvk.adapters.metrics import MeteredBackendRunner
    from clinvk.adapters.system import SystemClock, UuidIds

    if config is None:
        from clinvk.adapters.config.yaml_config import load_config

        config = load_config()
    home = config.home or os.path.expanduser("~/.clinvk")
    if runner is None:
        # The live-run registry sits next to the session store, for the next server to reap.
        runs = RunRegistry(os.path.join(home, "runs"))
        runner = SubprocessBackendRunner(config, secrets=secrets, runs=runs)
    store = store if store is not None else session_store(config, home)
    if hasattr(runner, "capture_cli_state") and hasattr(store, "save_cli_state"):
        # The CLIs' own session files travel with the session (domain/cli_state.py).
        runner = PortableCliSessions(runner, files=runner, store=store)  # type: ignore[arg-type]
    runner = LoggedBackendRunner(runner)
    if metrics is not None:
        runner = MeteredBackendRunner(runner, metrics)
    runner = AdmittingBackendRunner(runner, Admission(config))
    clock = clock if clock is not None else SystemClock()
    ids = ids if ids is not None else UuidIds()
    default_workdir = config.server.default_workdir or os.getcwd()
    images = images if images is not None else UrlImageFetcher()
    prompt = PromptService(
        config=config,
        runner=runner,
        store=store,
        clock=clock,
        ids=ids,
        default_workdir=default_workdir,
        images=images,
    )
    sessions = SessionService(
        store=store, clock=clock, config=config.session,
        on_delete=getattr(runner, "end_session", None),
    )
    orchestration = {"config": config, "prompt": prompt, "runner": runner}
    tool_runs = ToolRunService(
        config=config,
        prompt=prompt,
        bridge=tools if tools is not None else LoopbackToolBridge(
            heartbeat_secs=config.server.heartbeat_secs),
        background=background if background is not None else LoopBackground(),
    )
    return Services(
        config=config,
        runner=runner,
        store=store,
        prompt=prompt,
        sessions=sessions,
        parallel=ParallelService(**orchestration),
        chain=ChainService(**orchestration),
        compare=CompareService(**orchestration),
        tool_runs=tool_runs,
    )
