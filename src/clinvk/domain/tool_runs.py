"""Runs that pause for the client's tool results.

A request offering client tools starts its CLI with a bridge (`ports.tools.ToolBridge`)
that offers exactly those tools. When the CLI calls them, the request is answered with the
calls while the CLI stays blocked in them: the run is *parked*, keyed by the calls' ids.
The request that carries the results finds it, hands them to the CLI, and the rest of the
CLI's work (text, or more calls) answers that request. A parked run not resumed within
`server.tool_result_timeout_secs` is ended; a result for it then starts a fresh run (the
caller replays the conversation).

The run itself lives in the background (it outlives the request that started it); its
events are queued, and each request reads them up to the next pause or the end.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import anyio
import msgspec
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from clinvk.domain.config import Config
from clinvk.domain.errors import InvalidRequest
from clinvk.domain.events import Done, StreamEvent, ToolUse, Usage
from clinvk.domain.models import PromptRequest, PromptResult, TokenUsage
from clinvk.domain.prompt import PromptService
from clinvk.domain.tools import (
    BRIDGE_SERVER,
    BridgeSpec,
    ClientTool,
    ToolCall,
    ToolChoice,
    ToolOutcome,
    choice_instruction,
)
from clinvk.ports import EventSink
from clinvk.ports.tools import Background, ToolBridge, ToolChannel

#: How long calls arriving one after another are gathered into one answer when the CLI
#: has not said (by its own tool_use events) how many it is making.
SETTLE_SECS = 0.2


class ToolStep(msgspec.Struct, frozen=True, kw_only=True):
    """What one request gets: the CLI's tool calls (the run is parked), or its result."""

    calls: tuple[ToolCall, ...] = ()
    result: PromptResult | None = None
    #: Tokens the run used for this answer (with calls: as far as the CLI reported them
    #: before its pause; zeros when it reports only at the end).
    usage: TokenUsage = TokenUsage()


class _Paused(msgspec.Struct, frozen=True):
    calls: tuple[ToolCall, ...]


class _Finished:
    def __init__(self, result: PromptResult | None, error: BaseException | None) -> None:
        self.result = result
        self.error = error


class _Run:
    """One background run and the state its requests share."""

    def __init__(self, channel: ToolChannel, names: Sequence[str]) -> None:
        self.channel = channel
        self.names = frozenset(names)
        send, receive = anyio.create_memory_object_stream[object](math.inf)
        self.send: MemoryObjectSendStream[object] = send
        self.receive: MemoryObjectReceiveStream[object] = receive
        #: Calls handed to the client and not answered yet.
        self.pending: dict[str, ToolCall] = {}
        #: Calls that came from the bridge and are not yet handed to the client.
        self.incoming: list[ToolCall] = []
        #: Bridge-tool calls the CLI announced in its own output, and how many of them
        #: were already handed out.
        self.announced = 0
        self.handed = 0
        self.busy = False
        self.answered = anyio.Event()
        self.scope: anyio.CancelScope | None = None
        self._changed = anyio.Event()
        #: The run's usage so far (as the CLI reported it mid-run), and the part of it
        #: earlier answers reported.
        self.usage = TokenUsage()
        self.reported = TokenUsage()

    def poke(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    async def changed(self) -> None:
        await self._changed.wait()

    def is_bridge_tool(self, name: str) -> bool:
        if name in self.names:
            return True
        return BRIDGE_SERVER in name and any(name.endswith("_" + n) for n in self.names)

    async def sink(self, event: StreamEvent) -> None:
        if isinstance(event, ToolUse) and self.is_bridge_tool(event.name):
            self.announced += 1
            self.poke()
        if isinstance(event, Usage) and event.so_far:
            self.usage = event.usage
        self.send.send_nowait(event)


class ToolRunService:
    """Starts runs with client tools, parks them at their tool calls, resumes them."""

    def __init__(
        self,
        *,
        config: Config,
        prompt: PromptService,
        bridge: ToolBridge,
        background: Background,
        settle_secs: float = SETTLE_SECS,
    ) -> None:
        self._config = config
        self._prompt = prompt
        self._bridge = bridge
        self._background = background
        self._settle = settle_secs
        self._by_call: dict[str, _Run] = {}

    @property
    def timeout_secs(self) -> float:
        """How long a parked run waits for its results."""
        return self._config.server.tool_result_timeout_secs

    async def close(self) -> None:
        """End every run (parked or not) and the bridge (server shutdown)."""
        await self._background.cancel_all()
        await self._bridge.close()

    def parked(self) -> int:
        """Number of calls waiting for a result."""
        return len(self._by_call)

    async def start(
        self,
        request: PromptRequest,
        tools: Sequence[ClientTool],
        *,
        choice: ToolChoice = "auto",
        builtin_tools: bool | None = None,
        on_event: EventSink | None = None,
    ) -> ToolStep:
        """Run `request` offering `tools`; answer at the first tool calls or at the end."""
        if not tools or choice == "none":
            return ToolStep(result=await self._prompt.run(request, on_event))
        if request.session_id:
            raise InvalidRequest(
                "clinvk.session_id cannot be combined with client tools: send the whole "
                "conversation instead", field="clinvk.session_id",
            )
        names = [t.name for t in tools]
        instruction = choice_instruction(choice, names)
        if instruction:
            system = "\n\n".join(x for x in (request.system_prompt, instruction) if x)
            request = msgspec.structs.replace(request, system_prompt=system)
        # The conversation travels with every request; a parked run keeps no session.
        request = msgspec.structs.replace(request, ephemeral=True)
        self._prompt.check_backend(request.backend)
        channel = await self._bridge.open(tools)
        spec = BridgeSpec(
            url=channel.url,
            names=tuple(names),
            builtin_tools=(self._config.server.builtin_tools if builtin_tools is None
                           else builtin_tools),
            choice=choice,
            result_timeout_secs=self.timeout_secs,
        )
        run = _Run(channel, names)
        self._background.start(lambda: self._drive(run, request, spec))
        return await self._segment(run, on_event)

    def knows(self, call_id: str) -> bool:
        """Whether a parked run waits for this call's result."""
        return call_id in self._by_call

    async def resume(
        self, outcomes: Sequence[ToolOutcome], *, field: str = "messages",
        on_event: EventSink | None = None,
    ) -> ToolStep | None:
        """Hand the results to the run waiting for them and answer with what it does next;
        None when no parked run waits for any of them (the caller replays)."""
        run = next((self._by_call[o.call_id] for o in outcomes if o.call_id in self._by_call),
                   None)
        if run is None:
            return None
        given = {o.call_id for o in outcomes}
        missing = [i for i in run.pending if i not in given]
        if missing:
            raise InvalidRequest(
                "results are missing for tool calls " + ", ".join(missing)
                + " (the model made them together; send every result in one request)",
                field=field,
            )
        if run.busy:
            raise InvalidRequest("these tool results are already being answered", field=field)
        for outcome in outcomes:
            if outcome.call_id in run.pending:
                run.channel.answer(outcome)
                del run.pending[outcome.call_id]
                self._by_call.pop(outcome.call_id, None)
        run.answered.set()
        return await self._segment(run, on_event)

    async def _segment(self, run: _Run, on_event: EventSink | None) -> ToolStep:
        run.busy = True
        try:
            while True:
                try:
                    item = await run.receive.receive()
                except anyio.EndOfStream:
                    run.receive.close()
                    raise InvalidRequest("the run behind these tool calls has ended",
                                         field="messages") from None
                if isinstance(item, _Paused):
                    # Each answer reports its own part, so a client summing them is right.
                    usage, run.reported = run.usage.minus(run.reported), run.usage
                    return ToolStep(calls=item.calls, usage=usage)
                if isinstance(item, _Finished):
                    run.receive.close()
                    if item.error is not None:
                        raise item.error
                    result = item.result
                    assert result is not None
                    usage = result.token_usage.minus(run.reported)
                    return ToolStep(result=msgspec.structs.replace(result, token_usage=usage),
                                    usage=usage)
                if isinstance(item, Done):  # the run's usage: this answer's part of it
                    item = msgspec.structs.replace(item, usage=item.usage.minus(run.reported))
                if on_event is not None:
                    await on_event(item)  # type: ignore[arg-type]
        finally:
            run.busy = False

    async def _drive(self, run: _Run, request: PromptRequest, spec: BridgeSpec) -> None:
        finished = _Finished(None, None)
        try:
            with anyio.CancelScope() as scope:
                run.scope = scope
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._pump, run)
                    tg.start_soon(self._park_calls, run)
                    try:
                        finished.result = await self._prompt.run(request, run.sink, tools=spec)
                    except Exception as exc:  # noqa: BLE001 - the reading request re-raises it
                        finished.error = exc
                    tg.cancel_scope.cancel()
        finally:
            run.channel.close()
            for call_id in list(run.pending):
                self._by_call.pop(call_id, None)
            run.pending.clear()
            if finished.result is not None or finished.error is not None:
                run.send.send_nowait(finished)
            elif not run.busy:
                run.receive.close()  # ended while parked: nobody will read it
            run.send.close()

    @staticmethod
    async def _pump(run: _Run) -> None:
        while True:
            call = await run.channel.next_call()
            run.incoming.append(call)
            run.poke()

    async def _park_calls(self, run: _Run) -> None:
        while True:
            while not run.incoming:
                await run.changed()
            # Calls made together go out together: wait for as many as the CLI announced,
            # or, when it announced none (yet), a short while for more.
            deadline = anyio.current_time() + self._settle
            while True:
                need = run.announced - run.handed
                if need > 0 and len(run.incoming) >= need:
                    break
                left = deadline - anyio.current_time()
                if left <= 0:
                    break
                with anyio.move_on_after(left):
                    await run.changed()
            batch, run.incoming = tuple(run.incoming), []
            run.handed = min(run.announced, run.handed + len(batch))
            run.answered = anyio.Event()
            for call in batch:
                run.pending[call.id] = call
                self._by_call[call.id] = run
            run.send.send_nowait(_Paused(batch))
            with anyio.move_on_after(self.timeout_secs):
                await run.answered.wait()
            if run.pending:  # nobody came back with the results: end the run
                assert run.scope is not None
                run.scope.cancel()
                return
