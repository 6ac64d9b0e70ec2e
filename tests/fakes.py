"""Fakes of the ports, for fast unit tests of the domain and the HTTP translators."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timezone

import anyio

from clinvk.domain import events as ev
from clinvk.domain.errors import BackendFailed, SessionNotFound, UnknownBackend
from clinvk.domain.images import too_large
from clinvk.domain.models import (
    BackendInfo,
    ImageInput,
    RunResult,
    RunSpec,
    Session,
    SessionPage,
    SessionQuery,
    TokenUsage,
)


class FakeClock:
    """A clock that only moves when told."""

    def __init__(self) -> None:
        self.current = datetime(2026, 1, 1, tzinfo=timezone.utc)
        self.mono = 0.0

    def now(self) -> datetime:
        return self.current

    def monotonic(self) -> float:
        return self.mono


class FakeIds:
    """Sequential ids: s1, s2, ..."""

    def __init__(self) -> None:
        self.n = 0

    def session_id(self) -> str:
        self.n += 1
        return f"s{self.n}"


class FakeSessionStore:
    """Sessions in a dict."""

    def __init__(self) -> None:
        self.sessions: dict[str, Session] = {}

    async def create(self, session: Session) -> None:
        self.sessions[session.id] = session

    async def get(self, session_id: str) -> Session:
        try:
            return self.sessions[session_id]
        except KeyError:
            raise SessionNotFound(session_id) from None

    async def update(self, session_id: str, change: Callable[[Session], Session]) -> Session:
        self.sessions[session_id] = change(await self.get(session_id))
        return self.sessions[session_id]

    async def delete(self, session_id: str) -> None:
        await self.get(session_id)
        del self.sessions[session_id]

    async def ids_with_prefix(self, prefix: str, limit: int) -> list[str]:
        return [k for k in self.sessions if prefix and k.startswith(prefix)][:limit]

    async def list(self, query: SessionQuery) -> SessionPage:
        hits = [
            s
            for s in self.sessions.values()
            if query.backend in (None, s.backend) and query.status in (None, s.status)
        ]
        hits.sort(key=lambda s: s.last_used, reverse=True)
        page = hits[query.offset : query.offset + query.limit]
        return SessionPage(sessions=page, total=len(hits), limit=query.limit, offset=query.offset)

    async def purge(self, last_used_before: datetime) -> int:
        cutoff = last_used_before.isoformat()
        old = [k for k, s in self.sessions.items() if s.last_used < cutoff]
        for k in old:
            del self.sessions[k]
        return len(old)

    async def count(self) -> int:
        return len(self.sessions)

    @contextlib.asynccontextmanager
    async def hold(self, session_id: str) -> AsyncIterator[None]:
        yield  # one process: the prompt service's own busy set is the exclusion


#: Longest a held or meeting run waits before it gives up and goes on. It only guards
#: against a test hanging forever: what the test waits for normally comes at once.
HOLD_LIMIT_SECS = 30.0


async def wait_for_event(event: threading.Event, limit: float = HOLD_LIMIT_SECS) -> bool:
    """Wait (politely, for the event loop) until `event` is set, at most `limit` seconds.

    A threading.Event, so a test thread, a spy on the ASGI app or another run can set it.
    """
    with anyio.move_on_after(limit):
        while not event.is_set():
            await anyio.sleep(0.005)
    return event.is_set()


class FakeBackendRunner:
    """Answers every prompt with a scripted reply, streamed word by word.

    `fail` makes runs fail like a CLI would; `hang` makes them wait until cancelled;
    `runs` records every RunSpec so tests can assert on what the domain asked for.

    Two ways to order events without relying on sleeps:
    - `hold` (a threading.Event) makes every run, after its Init, wait before word number
      `hold_at` until the event is set (at most HOLD_LIMIT_SECS): the run is silent until
      the test (or a spy on the app) says so.
    - `rendezvous = n` makes every run, after its Init, wait until n runs have been live at
      the same time (at most HOLD_LIMIT_SECS): a run can only finish once n overlapped.
    """

    def __init__(self, names=("claude", "codex", "gemini"), unavailable=()) -> None:
        self._names = list(names)
        self.unavailable = set(unavailable)
        self.reply = "hello from fake"
        self.fail: str | None = None
        self.hang = False
        self.delay = 0.0
        self.usage = TokenUsage(input_tokens=3, output_tokens=3)
        self.cumulative = False
        self.runs: list[RunSpec] = []
        self.live = 0
        self.max_live = 0
        self.hold: threading.Event | None = None
        self.hold_at = 0
        self.rendezvous = 0

    async def _meet(self) -> None:
        """Wait until `rendezvous` runs have been live at once (see the class docstring)."""
        with anyio.move_on_after(HOLD_LIMIT_SECS):
            while self.max_live < self.rendezvous:
                await anyio.sleep(0.001)

    async def _held(self, index: int) -> None:
        """Wait for `hold` before word `index` when the test asked for it."""
        if self.hold is not None and index == self.hold_at:
            await wait_for_event(self.hold)

    def names(self) -> list[str]:
        return list(self._names)

    def info(self, backend: str) -> BackendInfo:
        if backend not in self._names:
            raise UnknownBackend(backend, self._names)
        return BackendInfo(name=backend, available=backend not in self.unavailable)

    def command(self, spec: RunSpec) -> tuple[str, ...]:
        return (spec.backend, "--", spec.prompt)

    async def run(self, spec: RunSpec, on_event=None) -> RunResult:
        self.runs.append(spec)
        self.live += 1
        self.max_live = max(self.max_live, self.live)
        try:
            thread = spec.resume_id or f"{spec.backend}-thread-{len(self.runs)}"

            async def emit(event):
                if on_event is not None:
                    await on_event(event)

            await emit(ev.Init(backend_session_id=thread, model=spec.model or "fake-model"))
            await self._meet()
            if self.hang:
                await anyio.sleep_forever()
            words = self.reply.split(" ")
            for i, word in enumerate(words):
                await self._held(i)
                if self.delay:
                    await anyio.sleep(self.delay)
                await emit(ev.TextDelta(text=word if i == 0 else " " + word))
            result = RunResult(
                backend=spec.backend,
                output=self.reply,
                exit_code=1 if self.fail else 0,
                duration_ms=1,
                usage=self.usage,
                usage_is_cumulative=self.cumulative,
                model=spec.model or "fake-model",
                backend_session_id=thread,
            )
            if self.fail:
                raise BackendFailed(spec.backend, self.fail, exit_code=1, result=result)
            await emit(ev.Usage(usage=self.usage))
            return result
        finally:
            self.live -= 1


class ScriptedRunner(FakeBackendRunner):
    """A FakeBackendRunner whose behaviour is chosen per run by markers in the prompt:
    `[fail]` fails after streaming its reply, `[hang]` waits until cancelled, `[slow]`
    sleeps `slow` seconds between words; backends in `failing` / `hanging` always fail /
    hang. The reply is `<backend>: <prompt>`; `cancelled` lists the prompts of runs that
    were cancelled while running."""

    def __init__(self, names=("claude", "codex", "gemini"), unavailable=()) -> None:
        super().__init__(names, unavailable)
        self.slow = 0.02
        self.cancelled: list[str] = []
        self.failing: set[str] = set()
        self.hanging: set[str] = set()

    async def run(self, spec, on_event=None) -> RunResult:
        self.runs.append(spec)
        self.live += 1
        self.max_live = max(self.max_live, self.live)
        try:

            async def emit(event):
                if on_event is not None:
                    await on_event(event)

            model = spec.model or f"{spec.backend}-model"
            await emit(ev.Init(backend_session_id=f"t{len(self.runs)}", model=model))
            await self._meet()
            if "[hang]" in spec.prompt or spec.backend in self.hanging:
                await anyio.sleep_forever()
            reply = f"{spec.backend}: {spec.prompt}"
            for i, word in enumerate(reply.split(" ")):
                if "[slow]" in spec.prompt:
                    await anyio.sleep(self.slow)
                await emit(ev.TextDelta(text=word if i == 0 else " " + word))
            result = RunResult(
                backend=spec.backend, output=reply, exit_code=0, duration_ms=5,
                usage=self.usage, model=model,
            )
            if "[fail]" in spec.prompt or spec.backend in self.failing:
                failed = RunResult(
                    backend=spec.backend, output=reply, exit_code=1, duration_ms=5, model=model
                )
                raise BackendFailed(spec.backend, "API Error: injected", exit_code=1,
                                    result=failed)
            return result
        except anyio.get_cancelled_exc_class():
            self.cancelled.append(spec.prompt)
            raise
        finally:
            self.live -= 1


class AppSpy:
    """An ASGI app wrapped so a test can see what went over the wire, without timing it.

    It counts HTTP requests started and finished (a request is finished when the app's
    call returns, e.g. once a run was cancelled for a client that left), and `when_sent`
    gives an event that is set once the response bodies sent so far contain `needle`
    `times` times (e.g. heartbeats), so a fake run can stay silent until then.
    """

    def __init__(self, app) -> None:
        self.app = app
        self.started = 0
        self.finished = 0
        self.paths: list[str] = []
        self._watches: list[tuple[bytes, int, threading.Event]] = []
        self._counts: dict[bytes, int] = {}

    def when_sent(self, needle: bytes, times: int = 1) -> threading.Event:
        event = threading.Event()
        self._counts.setdefault(needle, 0)
        self._watches.append((needle, times, event))
        return event

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        self.started += 1
        self.paths.append(scope["path"])

        async def spy(message) -> None:
            if message["type"] == "http.response.body":
                body = message.get("body", b"")
                for needle in self._counts:
                    self._counts[needle] += body.count(needle)
                for needle, times, event in self._watches:
                    if self._counts[needle] >= times:
                        event.set()
            await send(message)

        try:
            await self.app(scope, receive, spy)
        finally:
            self.finished += 1


class FakeImageFetcher:
    """The ImageFetcher port: answers every URL with `image` and records the URLs asked."""

    def __init__(self, image: bytes = b"", media_type: str = "image/png") -> None:
        self.image = image
        self.media_type = media_type
        self.urls: list[str] = []

    async def fetch(self, url: str, *, max_bytes: int) -> ImageInput:
        self.urls.append(url)
        if len(self.image) > max_bytes:
            raise too_large("image url", len(self.image), max_bytes)
        return ImageInput(media_type=self.media_type, data=self.image)  # type: ignore[arg-type]


class FakeToolChannel:
    """A bridge channel in memory: `call` is what a CLI's MCP call does."""

    def __init__(self, url: str, tools) -> None:
        from clinvk.adapters.mcp_bridge.channel import BridgeChannel

        self._inner = BridgeChannel(url.rsplit("/", 1)[-1], url, tools)
        self.url = url
        self.tools = tools
        self.closed = False

    async def next_call(self):
        return await self._inner.next_call()

    def answer(self, outcome) -> bool:
        return self._inner.answer(outcome)

    def close(self) -> None:
        self.closed = True
        self._inner.close()

    async def call(self, name: str, arguments: dict):
        return await self._inner.call(name, arguments)


class FakeToolBridge:
    """Opens in-memory channels, found again by URL (`channels`)."""

    def __init__(self) -> None:
        self.channels: dict[str, FakeToolChannel] = {}
        self.closed = False

    async def open(self, tools) -> FakeToolChannel:
        url = f"fake-bridge://run/{len(self.channels) + 1}"
        self.channels[url] = FakeToolChannel(url, list(tools))
        return self.channels[url]

    async def close(self) -> None:
        self.closed = True
        for channel in self.channels.values():
            channel.close()


class FakeBackground:
    """Runs background jobs in a task group the test owns (`async with background:`)."""

    def __init__(self) -> None:
        self._tg: anyio.abc.TaskGroup | None = None

    async def __aenter__(self) -> FakeBackground:  # noqa: PYI034
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        return self

    async def __aexit__(self, *exc) -> None:
        assert self._tg is not None
        self._tg.cancel_scope.cancel()
        await self._tg.__aexit__(*exc)

    def start(self, job) -> None:
        assert self._tg is not None, "use the FakeBackground as an async context manager"
        self._tg.start_soon(job)

    async def cancel_all(self) -> None:
        assert self._tg is not None
        self._tg.cancel_scope.cancel()


class FakeToolCallingRunner(FakeBackendRunner):
    """A runner whose runs with client tools call them as a CLI would through its bridge:
    `script` is a list of batches, each a list of (tool name, arguments) called at once
    (announced first as ToolUse events unless `announce` is False, after the usage so
    far of `so_far`, one per batch, when given); the answer is `results: ` and the
    results' texts. `cancelled` counts runs ended while waiting."""

    def __init__(self, bridge: FakeToolBridge, script, *, announce: bool = True,
                 so_far=None) -> None:
        super().__init__()
        self.bridge = bridge
        self.script = script
        self.announce = announce
        self.so_far = so_far
        self.cancelled = 0

    async def run(self, spec, on_event=None) -> RunResult:
        if spec.tools is None:
            return await super().run(spec, on_event)
        self.runs.append(spec)
        channel = self.bridge.channels[spec.tools.url]

        async def emit(event):
            if on_event is not None:
                await on_event(event)

        texts: list[str] = []
        try:
            await emit(ev.Init(backend_session_id="tool-thread", model="fake-model"))
            for n, batch in enumerate(self.script):
                if self.so_far is not None:
                    await emit(ev.Usage(usage=self.so_far[n], so_far=True))
                if self.announce:
                    for name, arguments in batch:
                        await emit(ev.ToolUse(name=f"mcp__client__{name}", input=arguments))
                outcomes: list = [None] * len(batch)

                async def one(i: int, name: str, arguments: dict, out=outcomes) -> None:
                    out[i] = await channel.call(name, arguments)

                async with anyio.create_task_group() as tg:
                    for i, (name, arguments) in enumerate(batch):
                        tg.start_soon(one, i, name, arguments)
                texts += [o.output for o in outcomes]
                for o in outcomes:
                    await emit(ev.ToolResult(output=o.output, id=o.call_id))
        except anyio.get_cancelled_exc_class():
            self.cancelled += 1
            raise
        reply = "results: " + ", ".join(texts)
        await emit(ev.TextDelta(text=reply))
        await emit(ev.Usage(usage=self.usage))
        return RunResult(backend=spec.backend, output=reply, exit_code=0, duration_ms=1,
                         usage=self.usage, model="fake-model")
