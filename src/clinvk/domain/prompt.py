"""The prompt service: run one prompt on one backend, keeping or continuing a session."""

from __future__ import annotations

import contextlib

import anyio
import msgspec

from clinvk.domain.chat import TextStream
from clinvk.domain.config import Config
from clinvk.domain.errors import (
    BackendFailed,
    BackendTimeout,
    BackendUnavailable,
    ClinvkError,
    InvalidRequest,
    SessionBusy,
    UnknownBackend,
)
from clinvk.domain.events import Done, Fallback, Init, Message, StreamEvent
from clinvk.domain.fallback import Target, plan, should_fall_back
from clinvk.domain.images import resolve as resolve_images
from clinvk.domain.models import (
    PromptRequest,
    PromptResult,
    RunResult,
    RunSpec,
    Session,
    TokenUsage,
)
from clinvk.domain.tools import BridgeSpec
from clinvk.domain.workdir import resolve_workdir
from clinvk.ports import (
    BackendRunner,
    Clock,
    EventSink,
    IdGenerator,
    ImageFetcher,
    SessionStore,
)


def _no_nul(**values: str | None) -> None:
    # A NUL byte cannot travel in argv or a file name; refuse it as bad input.
    for field, value in values.items():
        if value and "\x00" in value:
            raise InvalidRequest(f"{field} must not contain NUL characters", field=field)


#: Why a session is `error` after a turn that was cancelled before it finished.
INTERRUPTED = (
    "interrupted: the run was cancelled before it finished (the client went away or the "
    "server stopped)"
)

#: Tag of a session recorded by a dry run (nothing ran; it has no CLI session yet).
DRY_RUN_TAG = "dry-run"


def would_execute(command: tuple[str, ...]) -> str:
    """A dry run's output: `Would execute: <path> [<args>]`, as the original server prints it."""
    path, *args = command or ("",)
    return f"Would execute: {path} [{' '.join(args)}]"


def _iso(clock: Clock) -> str:
    return clock.now().isoformat(timespec="milliseconds").replace("+00:00", "Z")


class PromptService:
    """Runs prompts; the only place that decides options, deadlines and session bookkeeping."""

    def __init__(
        self,
        *,
        config: Config,
        runner: BackendRunner,
        store: SessionStore,
        clock: Clock,
        ids: IdGenerator,
        default_workdir: str,
        images: ImageFetcher | None = None,
    ) -> None:
        """`images` downloads http(s) images (only used when server.fetch_remote_images)."""
        self._config = config
        self._fetcher = images
        self._runner = runner
        self._store = store
        self._clock = clock
        self._ids = ids
        self._default_workdir = default_workdir
        self._busy: set[str] = set()

    # -- option resolution ------------------------------------------------------------

    def check_backend(self, name: str) -> None:
        """Raise UnknownBackend / BackendUnavailable unless `name` can run now."""
        names = self._runner.names()
        if name not in names:
            raise UnknownBackend(name, names)
        info = self._runner.info(name)
        if not info.available:
            raise BackendUnavailable(
                name, info.problem or "its command was not found or it is disabled"
            )

    def workdir(self, path: str | None) -> str:
        """The real, policy-checked workdir for a request."""
        server = self._config.server
        return resolve_workdir(
            path or self._default_workdir,
            allowed=server.allowed_workdir_prefixes,
            blocked=server.blocked_workdir_prefixes,
        )

    def deadline(self) -> float | None:
        """Seconds one run may take: the tighter of command and request timeouts."""
        limits = [
            t
            for t in (
                self._config.unified_flags.command_timeout_secs,
                self._config.server.request_timeout_secs,
            )
            if t and t > 0
        ]
        return min(limits) if limits else None

    def spec(self, request: PromptRequest, *, workdir: str, resume_id: str | None) -> RunSpec:
        """Merge request, backend config and unified flags into one RunSpec."""
        backend = self._config.backend(request.backend)
        flags = self._config.unified_flags

        def pick(value, backend_value, unified_value, default):
            if value not in (None, default):
                return value
            if backend_value not in (None, default):
                return backend_value
            return unified_value if unified_value is not None else default

        idle = flags.idle_timeout_secs
        return RunSpec(
            backend=request.backend,
            prompt=request.prompt,
            workdir=workdir,
            model=request.model or backend.model or None,
            ephemeral=request.ephemeral,
            approval_mode=pick(
                request.approval_mode, backend.approval_mode, flags.approval_mode, "default"
            ),
            sandbox_mode=pick(
                request.sandbox_mode, backend.sandbox_mode, flags.sandbox_mode, "default"
            ),
            max_tokens=request.max_tokens or flags.max_tokens,
            max_turns=request.max_turns or flags.max_turns,
            system_prompt=request.system_prompt or backend.system_prompt or None,
            extra=tuple(request.extra),
            resume_id=resume_id,
            timeout_secs=self.deadline(),
            idle_timeout_secs=idle if idle and idle > 0 else None,
            max_retries=next(
                (r for r in (request.max_retries, backend.max_retries, flags.max_retries)
                 if r is not None),
                None,
            ),
            images=tuple(request.images),
            effort=request.effort,
            output_schema=request.output_schema,
        )

    # -- running ----------------------------------------------------------------------

    async def run(
        self,
        request: PromptRequest,
        on_event: EventSink | None = None,
        *,
        tools: BridgeSpec | None = None,
    ) -> PromptResult:
        """Run `request`; stream unified events to `on_event`; return the result. `tools`:
        the client's tools, offered through a bridge (see domain/tool_runs.py).

        Raises a ClinvkError subclass for anything that stops the run; BackendFailed and
        BackendTimeout carry the partial PromptResult in `.result`.
        """
        if not request.prompt.strip():
            raise InvalidRequest("prompt must not be empty", field="prompt")
        _no_nul(model=request.model, system_prompt=request.system_prompt,
                extra=" ".join(request.extra), session_id=request.session_id)
        self.check_backend(request.backend)
        if request.images:
            images = await resolve_images(request.images, self._config.server, self._fetcher)
            request = msgspec.structs.replace(request, images=list(images))

        session: Session | None = None
        if request.session_id:
            session = await self._store.get(request.session_id)
            if session.backend != request.backend:
                raise InvalidRequest(
                    f"session {session.id!r} belongs to backend {session.backend!r}",
                    field="backend",
                )
            if request.workdir and self.workdir(request.workdir) != session.working_dir:
                raise InvalidRequest(
                    "a session continues in its own working_dir "
                    f"({session.working_dir}); omit workdir or use that one",
                    field="workdir",
                )
            workdir = self.workdir(session.working_dir)
        else:
            workdir = self.workdir(request.workdir)

        targets = self._targets(request, session)
        spec = self.spec(
            request, workdir=workdir, resume_id=session.backend_session_id if session else None
        )
        if tools is not None:
            spec = msgspec.structs.replace(spec, tools=tools)
        dry_run = request.dry_run or self._config.unified_flags.dry_run
        if dry_run:
            # Checked (and argv built) before a session is recorded, so a refused flag
            # leaves nothing behind.
            command = self._runner.command(spec)

        if session is None and not request.ephemeral:
            now = _iso(self._clock)
            tags = list(self._config.session.default_tags)
            if dry_run and DRY_RUN_TAG not in tags:
                tags.append(DRY_RUN_TAG)
            session = Session(
                id=self._ids.session_id(),
                backend=request.backend,
                created_at=now,
                last_used=now,
                working_dir=workdir,
                model=spec.model,
                initial_prompt=request.prompt[:1000],
                title=request.prompt.strip().splitlines()[0][:80],
                tags=tags,
                metadata=dict(request.metadata),
            )
            await self._store.create(session)
        session_id = session.id if session else None

        if dry_run:
            return await self._dry_run(spec, command, session_id, on_event)

        if session_id is not None:
            if session_id in self._busy:
                raise SessionBusy(session_id)
            self._busy.add(session_id)
        try:
            # The store keeps the session to this run across processes and replicas too.
            held = self._store.hold(session_id) if session_id else contextlib.nullcontext()
            async with held:
                return await self._run_targets(request, targets, spec, session, on_event)
        finally:
            if session_id is not None:
                self._busy.discard(session_id)

    def _targets(self, request: PromptRequest, session: Session | None) -> list[Target]:
        """The primary target and its fallbacks (request's list, else the backend's)."""
        entries = request.fallback or self._config.backend(request.backend).fallback
        field = "fallback" if request.fallback else f"backends.{request.backend}.fallback"
        targets = plan(
            Target(backend=request.backend, model=request.model),
            entries,
            self._runner.names(),
            field,
        )
        for i, target in enumerate(targets[1:]):
            _no_nul(**{f"fallback[{i}]": target.model})
        if session is not None and session.backend_session_id:
            # Only the same CLI can resume its own conversation; other backends would
            # silently answer without the session's history.
            targets = [t for t in targets if t.backend == session.backend]
        return targets

    async def _run_targets(
        self,
        request: PromptRequest,
        targets: list[Target],
        spec: RunSpec,
        session: Session | None,
        on_event: EventSink | None,
    ) -> PromptResult:
        """Run on the first target; on a retryable failure before any text reached the
        client, run the same request on the next one (see domain/fallback.py)."""
        text_sent = False
        chat = TextStream()

        async def watch(event: StreamEvent) -> None:
            nonlocal text_sent
            if chat.text(event):
                text_sent = True
            if on_event is not None:
                await on_event(event)

        tried: list[Target] = []
        for i, target in enumerate(targets):
            if i > 0:
                if not self._runner.info(target.backend).available:
                    continue  # a fallback whose CLI is missing is passed over
                spec = self._fallback_spec(request, target, spec, session)
            tried.append(target)
            try:
                return await self._run(spec, session, watch)
            except ClinvkError as exc:
                following = [t for t in targets[i + 1 :]
                             if self._runner.info(t.backend).available]
                if not should_fall_back(exc, text_sent=text_sent, has_next=bool(following)):
                    raise
                if on_event is not None:
                    await on_event(
                        Fallback(
                            failed=target.label(),
                            reason=exc.message,
                            code=exc.code,
                            next=following[0].label(),
                        )
                    )
        raise AssertionError("unreachable: the last target's failure is re-raised")

    def _fallback_spec(
        self, request: PromptRequest, target: Target, primary: RunSpec, session: Session | None
    ) -> RunSpec:
        same_cli = target.backend == request.backend
        moved = msgspec.structs.replace(
            request,
            backend=target.backend,
            model=target.model,
            # `extra` flags are allow-listed per CLI: another CLI does not take them.
            extra=request.extra if same_cli else [],
        )
        resume = session.backend_session_id if session and same_cli else None
        spec = self.spec(moved, workdir=primary.workdir, resume_id=resume)
        return msgspec.structs.replace(spec, tools=primary.tools)

    @staticmethod
    async def _dry_run(
        spec: RunSpec,
        command: tuple[str, ...],
        session_id: str | None,
        on_event: EventSink | None,
    ) -> PromptResult:
        # Nothing runs; the answer is the command, in the words clinvoker users know.
        result = PromptResult(
            session_id=session_id,
            backend=spec.backend,
            exit_code=0,
            duration_ms=0,
            output=would_execute(command),
            token_usage=TokenUsage(),
            model=spec.model,
            command=command,
        )
        if on_event is not None:
            await on_event(Init(model=spec.model, session_id=session_id))
            await on_event(Message(text=result.output))
            await on_event(
                Done(exit_code=0, duration_ms=0, session_id=session_id, model=spec.model)
            )
        return result

    async def _run(
        self, spec: RunSpec, session: Session | None, on_event: EventSink | None
    ) -> PromptResult:
        session_id = session.id if session else None
        spec = msgspec.structs.replace(spec, session_id=session_id)

        async def relay(event: StreamEvent) -> None:
            if isinstance(event, Init):
                event = msgspec.structs.replace(event, session_id=session_id)
            if on_event is not None:
                await on_event(event)

        try:
            run = await self._runner.run(spec, relay)
        except (BackendFailed, BackendTimeout) as exc:
            partial = exc.result if isinstance(exc.result, RunResult) else None
            usage = self._usage(partial, session) if partial else TokenUsage()
            if session is not None:
                await self._record(session, partial, usage, failed=True)
            if partial is not None:
                exc.result = self._result(partial, usage, session_id, error=exc.message)
            raise
        except anyio.get_cancelled_exc_class():
            # The client went away, or the server is stopping: the turn did not finish, so
            # the session must not look as if it had. A store that fails here must not
            # turn the cancellation into another error.
            if session is not None:
                with anyio.CancelScope(shield=True), contextlib.suppress(ClinvkError, OSError):
                    await self._store.update(session.id, self._interrupted)
            raise

        usage = self._usage(run, session)
        if session is not None:
            await self._record(session, run, usage, failed=False)
        result = self._result(run, usage, session_id, error=None)
        if on_event is not None:
            await on_event(
                Done(
                    exit_code=result.exit_code,
                    duration_ms=result.duration_ms,
                    usage=result.token_usage,
                    stop_reason=result.stop_reason,
                    session_id=session_id,
                    model=result.model,
                )
            )
        return result

    @staticmethod
    def _usage(run: RunResult, session: Session | None) -> TokenUsage:
        # Codex reports totals over the whole thread; turn them into this turn's share.
        if run.usage_is_cumulative and session is not None and session.turn_count > 0:
            return run.usage.minus(session.token_usage)
        return run.usage

    @staticmethod
    def _result(
        run: RunResult, usage: TokenUsage, session_id: str | None, *, error: str | None
    ) -> PromptResult:
        return PromptResult(
            session_id=session_id,
            backend=run.backend,
            exit_code=run.exit_code,
            duration_ms=run.duration_ms,
            output=run.output,
            token_usage=usage,
            model=run.model,
            stop_reason=run.stop_reason,
            error=error,
            command=run.command,
        )

    def _interrupted(self, current: Session) -> Session:
        return msgspec.structs.replace(
            current, status="error", error=INTERRUPTED, last_used=_iso(self._clock)
        )

    async def _record(
        self, session: Session, run: RunResult | None, usage: TokenUsage, *, failed: bool
    ) -> None:
        now = _iso(self._clock)
        keep_usage = self._config.session.store_token_usage

        def change(current: Session) -> Session:
            return msgspec.structs.replace(
                current,
                # A fallback run's session belongs to the backend that answered.
                backend=run.backend if run is not None and not failed else current.backend,
                last_used=now,
                status="error" if failed else "active",
                error=current.error if failed else None,
                turn_count=current.turn_count + (1 if run is not None and not failed else 0),
                token_usage=current.token_usage + usage if keep_usage else current.token_usage,
                backend_session_id=(run.backend_session_id if run else None)
                or current.backend_session_id,
                model=(run.model if run else None) or current.model,
            )

        await self._store.update(session.id, change)

