"""SubprocessBackendRunner: the BackendRunner port over the real CLIs."""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Callable, Sequence

import anyio
import msgspec

from clinvk.adapters.backends import cli_state, priority
from clinvk.adapters.backends.base import CliBackend, build_env
from clinvk.adapters.backends.claude import ClaudeBackend
from clinvk.adapters.backends.codex import CodexBackend
from clinvk.adapters.backends.discovery import CliDiscovery, CliLocation, VersionProbes
from clinvk.adapters.backends.environment import CliEnvironment, missing_variable
from clinvk.adapters.backends.faults import explain_failure, start_failure
from clinvk.adapters.backends.gemini import GeminiBackend
from clinvk.adapters.backends.hot import HotProcess, HotSessions
from clinvk.adapters.backends.pool import (
    CpuIdle,
    WarmPool,
    beside,
    pool_key,
    spare_priority,
)
from clinvk.adapters.backends.pool_tender import PoolTender
from clinvk.adapters.backends.process import ProcessGroups, ProcessOutcome, drive, spawn
from clinvk.adapters.backends.registry import RunRegistry
from clinvk.adapters.backends.run_files import needs_files, placeholders, run_files
from clinvk.domain.cli_state import CliState
from clinvk.domain.config import BackendConfig, Config
from clinvk.domain.errors import (
    BackendFailed,
    BackendMissingEnv,
    BackendTimeout,
    BackendUnavailable,
    UnknownBackend,
)
from clinvk.domain.events import Message, StreamEvent, TextDelta, ToolUse
from clinvk.domain.models import BackendInfo, RunResult, RunSpec
from clinvk.ports import EventSink

#: Events after which a run's latency-critical start is over: the pool may start a spare.
_ANSWERING = (TextDelta, Message, ToolUse)
#: With spares starting at low priority, how long the one a run took still waits before it
#: is replaced: the run's prompt write and its CLI's first steps go first.
LOW_SPARE_HEAD_START_SECS = 0.05


def default_backends() -> dict[str, CliBackend]:
    """The three supported CLIs."""
    return {b.name: b for b in (ClaudeBackend(), CodexBackend(), GeminiBackend())}


class SubprocessBackendRunner:
    """Runs the CLIs as subprocesses in their own process groups."""

    def __init__(
        self,
        config: Config,
        backends: dict[str, CliBackend] | None = None,
        *,
        discovery: CliDiscovery | None = None,
        secrets: Sequence[str] = (),
        runs: RunRegistry | None = None,
    ) -> None:
        """`secrets`: values (the server's API keys) no CLI may ever see in its environment;
        `runs`: where live runs are written down for the next server (see registry.py)."""
        self._config = config
        self._backends = backends or default_backends()
        self._environment = CliEnvironment(config.server, os.environ, secrets)
        self.groups = ProcessGroups(runs)
        server = config.server
        spawner, promote = spare_priority(priority.detect(server.warm_pool_spare_priority))
        self.pool = WarmPool(
            idle_secs=server.warm_pool_idle_secs, shrink_secs=server.warm_pool_shrink_secs,
            idle=CpuIdle(), min_idle_cores=server.warm_pool_min_idle_cores,
            spawner=spawner, promote=promote, calm=lambda: self.tender.calm,
            starting=lambda cli: priority.starting(cli.process.pid),
        )
        self.hot = HotSessions(
            max_hot=server.hot_sessions_max, idle_secs=server.hot_session_idle_secs
        )
        self.tender = PoolTender(self.pool, self.hot, capacity=self._capacity)
        self._discovery = discovery if discovery is not None else CliDiscovery()
        self._found: dict[str, CliLocation] = {}
        #: `--version` answers by executable path, filled in by `probe_versions`.
        self._versions: dict[str, str] = {}
        self._probes = VersionProbes()

    def names(self) -> list[str]:
        return list(self._backends)

    def _backend(self, name: str) -> CliBackend:
        try:
            return self._backends[name]
        except KeyError:
            raise UnknownBackend(name, self.names()) from None

    def locate(self, name: str, *, ask_npm: bool = False) -> CliLocation:
        """Where backend `name`'s CLI is: the configured command, else found by discovery.

        The answer is kept while that file stays executable; a backend that was not found
        is searched again (cheaply, without npm) on each call, so installing a CLI while the
        server runs makes it available.
        """
        cfg = self._config.backend(name)
        if not cfg.enabled:
            return CliLocation(
                name=name,
                problem="disabled in config",
                hint=f"set `backends.{name}.enabled: true` to use it",
            )
        known = self._found.get(name)
        if known is not None and known.path is not None and os.access(known.path, os.X_OK):
            return known
        path = cfg.env.get("PATH") or os.environ.get("PATH")
        if cfg.command:
            found = self._discovery.locate_command(name, cfg.command, path=path)
        else:
            found = self._discovery.locate(name, path=path, ask_npm=ask_npm)
        self._found[name] = found
        return found

    def executable(self, name: str) -> str | None:
        """Absolute path of the backend's command, or None when it is not found/enabled."""
        return self.locate(name).path

    def discover(self) -> list[CliLocation]:
        """Look for every backend's CLI now, asking npm for its prefix if need be (start-up)."""
        return [self.locate(name, ask_npm=True) for name in self._backends]

    def probe_versions(
        self, on_report: Callable[[CliLocation, str | None, str | None], None]
    ) -> None:
        """Run each found CLI's `--version` once, off the request path; call
        `on_report(location, version, error)` per backend (at once for a missing one).

        The probe gets the server's base environment only: a version needs no backend
        secrets, and it must not look like one of the backend's runs.
        """
        for found in self.discover():
            if found.path is None:
                on_report(found, None, None)
                continue
            path = found.path
            cfg = self._config.backend(found.name)
            base = BackendConfig(env={"PATH": cfg.env["PATH"]} if "PATH" in cfg.env else {})
            env = build_env(self._backends[found.name].env_prefixes, base, {})

            def done(version, error, found=found, path=path) -> None:
                if version is not None:
                    self._versions[path] = version
                on_report(found, version, error)

            self._probes.start(path, env, done)

    def stop_probes(self) -> None:
        """End any `--version` probe still running (shutdown)."""
        self._probes.close()

    def info(self, backend: str) -> BackendInfo:
        self._backend(backend)
        found = self.locate(backend)
        path = found.path
        return BackendInfo(
            name=backend,
            available=path is not None,
            problem=found.problem if path is None else None,
            model=self._config.backend(backend).model or None,
            warm_pool_size=self.pool.size(backend),
            warm_pool_ready=self.pool.ready(backend),
            warm_pool_hits=self.pool.hits.get(backend, 0),
            path=path,
            version=self._versions.get(path) if path is not None else None,
        )

    def _warm(self, backend: CliBackend, spec: RunSpec, cfg, exe: str, sp_file: str | None):
        """(key, invocation) of the form a pooled process must have to serve this run, or
        None. A run that may leave its process for the session's next turn starts in its
        backend's hot form (codex: an app server; gemini: ACP), so that is what the pool
        must hold for it; any other run uses the backend's warm form."""
        if needs_files(spec) or spec.tools is not None or not _may_resume_warm(backend, spec):
            # A run's own files (images, a schema) or its own tools bridge cannot be in a
            # pooled process's argv or settings.
            return None
        hot_form = self._hot(backend, spec, cfg, exe)
        if hot_form is not None:
            inv = hot_form[1]
        else:
            make = getattr(backend, "warm_invocation", None)
            inv = make(spec, cfg, exe, sp_file) if make is not None else None
        if inv is None:
            return None
        env = self._environment.build(backend.env_prefixes, cfg, inv.env)
        return pool_key(inv.argv, spec.workdir, env), inv

    async def start_pool(self, prototypes: list[RunSpec]) -> None:
        """Start the warm pool for each prototype run whose backend has `warm_pool` > 0.

        A prototype is a backend's default run (the options a request gets when it sets
        none); only requests that resolve to exactly that invocation use a warm process.
        """
        for spec in prototypes:
            cfg = self._config.backend(spec.backend)
            backend = self._backends.get(spec.backend)
            exe = self.executable(spec.backend)
            if cfg.warm_pool <= 0 or backend is None or exe is None:
                continue
            warm = self._warm(backend, spec, cfg, exe, None)
            if warm is not None:
                _key, inv = warm
                env = self._environment.build(backend.env_prefixes, cfg, inv.env)
                await self.pool.add(
                    spec.backend, inv.argv, spec.workdir, env, cfg.warm_pool,
                    ceiling=cfg.warm_pool_max,
                )

    async def tend_pool(self) -> None:
        """Look after the pool and hot sessions between requests until cancelled (run as
        one task for the server's lifespan, ended by `stop_tending` before `close_pool`)."""
        await self.tender.tend()

    async def stop_tending(self) -> None:
        """End `tend_pool` between two of its steps and wait for it (shutdown)."""
        await self.tender.stop()

    async def close_pool(self) -> None:
        """Terminate the pooled processes and the hot sessions' processes."""
        await self.hot.aclose()
        await self.pool.aclose()

    async def end_session(self, backend_session_id: str) -> None:
        """End the hot process of a backend session, if any (its session was deleted)."""
        await self.hot.end(backend_session_id)

    def _capacity(self, backend: str) -> int | None:
        """How many more runs of `backend` the admission limits allow now (None: no limit)."""
        limits = []
        per_backend = self._config.backend(backend).max_concurrent
        if per_backend > 0:
            limits.append(per_backend - self.groups.count(backend))
        overall = self._config.server.max_concurrent_runs
        if overall > 0:
            limits.append(overall - (self.groups.count() - self.hot.count()))
        return max(0, min(limits)) if limits else None

    def _hot(self, backend: CliBackend, spec: RunSpec, cfg, exe: str):
        """(signature, invocation) of the process that takes this session's turns, or None
        when this run cannot leave a process waiting for the next turn. The signature is
        that of the session's first turn: a later turn matches only with the same options."""
        make = getattr(backend, "hot_invocation", None)
        if make is None or not self.hot.enabled or spec.ephemeral or spec.system_prompt:
            return None  # the CLI cannot take another turn in the same process
        if needs_files(spec):
            return None
        fresh = make(msgspec.structs.replace(spec, resume_id=None), cfg, exe, None)
        inv = make(spec, cfg, exe, None)
        if fresh is None or inv is None:
            return None
        env = self._environment.build(backend.env_prefixes, cfg, fresh.env)
        return pool_key(fresh.argv, spec.workdir, env), inv

    async def capture_cli_state(self, spec: RunSpec, cli_session_id: str) -> CliState | None:
        """The files the run's CLI keeps session `cli_session_id` in (domain/cli_state.py)."""
        root, patterns = self._session_files(spec, cli_session_id)
        return await anyio.to_thread.run_sync(
            cli_state.capture, spec.backend, root, patterns, cli_session_id
        )

    async def restore_cli_state(self, spec: RunSpec, state: CliState) -> None:
        """Put a stored copy of a CLI session's files where the run's CLI looks for them."""
        root, _ = self._session_files(spec, state.cli_session_id)
        await anyio.to_thread.run_sync(cli_state.restore, root, state)

    def _session_files(self, spec: RunSpec, session_id: str) -> tuple[str, tuple[str, ...]]:
        backend = self._backend(spec.backend)
        env = self._environment.build(backend.env_prefixes, self._config.backend(spec.backend), {})
        return backend.session_files(env, session_id)

    def command(self, spec: RunSpec) -> tuple[str, ...]:
        backend = self._backend(spec.backend)
        cfg = self._config.backend(spec.backend)
        exe = self.executable(spec.backend) or cfg.command or spec.backend
        sp = "<system-prompt-file>" if spec.system_prompt else None
        inv = backend.invocation(spec, cfg, exe, sp, files=placeholders(spec))
        on_stdin = inv.stdin is not None or inv.input is not None
        return tuple(inv.argv) + (("<prompt on stdin>",) if on_stdin else ())

    async def run(self, spec: RunSpec, on_event: EventSink | None = None) -> RunResult:
        with self.tender.running() as opened:  # the timer starts no spare while runs are live
            return await self._run(spec, on_event, opened)

    async def _run(
        self, spec: RunSpec, on_event: EventSink | None, opened: Callable[[], None]
    ) -> RunResult:
        backend = self._backend(spec.backend)
        cfg = self._config.backend(spec.backend)
        found = self.locate(spec.backend)
        exe = found.path
        if exe is None:
            raise BackendUnavailable(spec.backend, found.problem or "not found")
        prepare = getattr(backend, "prepare", None)
        if prepare is not None:
            # What a backend's argv needs that takes a blocking call (codex: its model
            # catalog for client tools), off the event loop.
            await anyio.to_thread.run_sync(prepare, spec, cfg, exe, abandon_on_cancel=True)
        sp_file = _write_temp(spec.system_prompt, ".md") if spec.system_prompt else None
        stdin_file: str | None = None
        files = contextlib.ExitStack()
        try:
            inv = backend.invocation(
                spec, cfg, exe, sp_file, files=files.enter_context(run_files(spec))
            )
            if inv.stdin is not None:
                stdin_file = _write_temp(inv.stdin, ".txt")
            env = self._environment.build(backend.env_prefixes, cfg, inv.env)

            def env_of(invocation) -> dict[str, str]:
                return self._environment.build(backend.env_prefixes, cfg, invocation.env)

            hot_form = self._hot(backend, spec, cfg, exe)
            hot_sig = hot_form[0] if hot_form is not None else None
            hot: HotProcess | None = None
            token = 0
            if spec.resume_id and self.hot.enabled:
                token = self.hot.begin(spec.resume_id)
                if hot_sig is None:
                    await self.hot.end(spec.resume_id)  # it would miss this turn
                else:
                    hot = await self.hot.take(spec.resume_id, hot_sig)
            if hot is None and not _may_resume_warm(backend, spec):
                hot_form = hot_sig = None  # a fresh process of the hot form cannot resume it
            warm = self._warm(backend, spec, cfg, exe, sp_file) if cfg.warm_pool > 0 else None
            pooled = hot is None and warm is not None
            cli = await self.pool.take(warm[0]) if pooled and warm is not None else None
            # A miss with options that can recur (not a one-off system prompt file or a
            # resume id) teaches the pool that signature, so the next such request is warm.
            learn = cli is None and pooled and not spec.system_prompt and not spec.resume_id
            # A pooled process of a CLI whose waiting form speaks a protocol (gemini's ACP)
            # is driven turn by turn even for a one-shot run, then ended.
            turns = hot_form is not None or (
                cli is not None and getattr(backend, "warm_takes_turns", False)
            )
            decoder = (
                backend.hot_decoder(spec, cfg)  # type: ignore[attr-defined]
                if turns else backend.decoder(spec, cfg)
            )
            answered = anyio.Event()

            async def replenish() -> None:
                # A spare at normal priority starts once the run has answered (a CLI starting
                # takes most of a core); one that starts low yields the CPU to the run, so it
                # starts at once, after the prompt is written, to be ready sooner.
                if self.pool.spares_low:
                    with anyio.move_on_after(LOW_SPARE_HEAD_START_SECS):
                        await answered.wait()
                else:
                    await answered.wait()
                if warm is not None:
                    await self.pool.keep_filled(warm[0], lambda: self._capacity(spec.backend))

            async def on_line(line: bytes) -> None:
                events: list[StreamEvent] = decoder.feed(line)
                if on_event is not None:
                    for event in events:
                        await on_event(event)
                if any(isinstance(e, _ANSWERING) for e in events):
                    answered.set()
                    opened()

            async def on_stderr_line(line: bytes) -> None:
                # Some CLIs report progress (retries) only on stderr.
                events: list[StreamEvent] = decoder.feed_stderr(line)
                if on_event is not None:
                    for event in events:
                        await on_event(event)

            started = time.monotonic()
            try:
                if hot_form is not None:
                    if hot is None and cli is None:
                        # Started in its take-turns form, so it can take the next turn too.
                        cli = await spawn(
                            hot_form[1].argv, cwd=spec.workdir, env=env_of(hot_form[1]),
                            stdin=True, label=spec.backend,
                        )
                    first = hot is None or hot.turns == 0
                    feed = backend.hot_input(spec, decoder, first)  # type: ignore[attr-defined]
                elif turns:
                    feed = backend.hot_input(spec, decoder, True)  # type: ignore[attr-defined]
                elif cli is not None:
                    feed = backend.warm_input(spec.prompt)  # type: ignore[attr-defined]
                else:
                    piped = inv.input is not None
                    cli = await spawn(
                        inv.argv, cwd=spec.workdir, env=env, stdin=piped or stdin_file,
                        label=spec.backend,
                    )
                    feed = inv.input
            except OSError as exc:
                raise start_failure(spec.backend, exe, spec.workdir, exc) from exc
            keep = False
            if hot is None and turns:
                assert cli is not None
                signature = hot_sig if hot_sig is not None else warm[0] if warm else ()
                hot = HotProcess(cli, signature, self.groups)

            async def run_it() -> tuple[ProcessOutcome, bool]:
                if hot is not None:
                    return await hot.turn(
                        feed,
                        on_line=on_line,
                        on_stderr_line=on_stderr_line,
                        done=lambda: bool(decoder.turn_done),  # type: ignore[attr-defined]
                        replies=getattr(decoder, "replies", None),
                        timeout=spec.timeout_secs,
                        idle_timeout=spec.idle_timeout_secs,
                    )
                assert cli is not None
                ended = await drive(
                    cli,
                    on_line=on_line,
                    timeout=spec.timeout_secs,
                    idle_timeout=spec.idle_timeout_secs,
                    groups=self.groups,
                    input=feed,
                    on_stderr_line=on_stderr_line,
                    session_id=spec.session_id,
                )
                return ended, False

            try:
                if pooled:
                    outcome, keep = await beside(run_it, replenish)
                else:
                    outcome, keep = await run_it()
            finally:
                if pooled and warm is not None:
                    if learn:
                        warm_env = self._environment.build(backend.env_prefixes, cfg, warm[1].env)
                        await self.pool.adopt(
                            spec.backend, warm[1].argv, spec.workdir, warm_env,
                            size=cfg.warm_pool,
                            limit=self._config.server.warm_pool_signatures,
                            ceiling=cfg.warm_pool_max,
                        )
                    await self.pool.refill(warm[0], capacity=self._capacity(spec.backend))
            try:
                result = self._result(spec, decoder, outcome, started, env)
                if keep and hot is not None and hot_form is not None:
                    keep = False
                    await self.hot.park(result.backend_session_id, token, hot)
                return result
            finally:
                if keep and hot is not None:
                    # The turn failed (never keep a process after an error), or the process
                    # served a one-shot run: it takes no other request's turn.
                    await hot.end()
        finally:
            files.close()  # the run's private folder, on success, failure or cancel
            for path in (sp_file, stdin_file):
                if path:
                    os.unlink(path)

    def _result(self, spec: RunSpec, decoder, outcome, started: float, env) -> RunResult:
        """The run's result from its decoder, or the error it ended with."""
        duration_ms = int((time.monotonic() - started) * 1000)
        if outcome.timed_out is not None:
            partial = _partial(decoder, outcome.exit_code, outcome.stderr, duration_ms)
            idle = outcome.timed_out == "idle"
            seconds = spec.idle_timeout_secs if idle else spec.timeout_secs
            raise BackendTimeout(spec.backend, seconds or 0, idle=idle, result=partial)
        try:
            return decoder.finish(
                exit_code=outcome.exit_code, stderr=outcome.stderr, duration_ms=duration_ms
            )
        except BackendFailed as exc:
            explained = explain_failure(exc, outcome.exit_code, spec.workdir)
            if explained is not None:
                raise explained from exc
            variable = missing_variable(f"{exc.message}\n{outcome.stderr}")
            if variable is None or variable in env:
                raise
            raise BackendMissingEnv(
                spec.backend, variable, exc.message, exit_code=exc.exit_code,
                result=exc.result,
            ) from exc


def _may_resume_warm(backend: CliBackend, spec: RunSpec) -> bool:
    """Whether a fresh process of the backend's waiting form may serve this run: not a
    resumed run when the backend says its waiting form cannot reopen a session safely
    (gemini's ACP `session/load`, see gemini.py), which then resumes cold."""
    return not spec.resume_id or getattr(backend, "warm_resumes", True)


def _partial(decoder, exit_code: int, stderr: str, duration_ms: int) -> RunResult | None:
    try:
        return decoder.finish(exit_code=exit_code, stderr=stderr, duration_ms=duration_ms)
    except BackendFailed as exc:
        return exc.result


def _write_temp(content: str | bytes, suffix: str) -> str:
    """A private (0600) temp file holding a system prompt or a stdin prompt for one run."""
    fd, path = tempfile.mkstemp(prefix="clinvk-", suffix=suffix)
    data = content.encode("utf-8", "surrogatepass") if isinstance(content, str) else content
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    return path
