"""The nine MCP tools: clinvoker's names, schemas from the native REST API's msgspec types.

Every tool decodes its arguments into the same type the REST endpoint decodes its body
into (Go zero values dropped first, as clinvoker reads them) and answers with the same
wire type the endpoint answers with, so `inputSchema` / `outputSchema` are generated from
the types that do the work and REST and MCP cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

import msgspec

from clinvk.adapters.http.health import Health
from clinvk.adapters.http.native.app import prompt_response
from clinvk.adapters.http.native.go_zero import unset_zero_values
from clinvk.adapters.http.native.orchestration import (
    CHAIN_LINES,
    COMPARE_LINES,
    PARALLEL_LINES,
    chain_response,
    compare_response,
    parallel_response,
)
from clinvk.adapters.http.native.orchestration_schemas import (
    ChainBody,
    ChainResponse,
    CompareBody,
    CompareResponse,
    ParallelBody,
    ParallelResponse,
)
from clinvk.adapters.http.native.schemas import (
    BackendEntry,
    BackendsResponse,
    DeletedResponse,
    PromptResponse,
    SessionsResponse,
    StreamLine,
)
from clinvk.domain import events as ev
from clinvk.domain.chain import ChainRequest
from clinvk.domain.compare import CompareRequest
from clinvk.domain.models import PromptRequest, Session, SessionQuery
from clinvk.domain.orchestration import Progress, RunFinished, RunStarted, RunText
from clinvk.domain.parallel import ParallelRequest
from clinvk.domain.services import Services

#: Sends one progress message (the client asked with a progressToken).
ProgressFn = Callable[[str], Awaitable[None]]
#: Sends one log notification: level, data.
LogFn = Callable[[str, dict[str, Any]], Awaitable[None]]


class NoArguments(msgspec.Struct, kw_only=True):
    """This tool takes no arguments."""


class SessionRef(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """One session, by its id or a unique prefix of it."""

    id: Annotated[str, msgspec.Meta(min_length=1)]


@dataclass
class ToolContext:
    """What a running tool may send back besides its result."""

    #: Progress messages; None when the client gave no progressToken.
    progress: ProgressFn | None = None
    #: Log notifications (the native stream's lines); None when the transport cannot send.
    log: LogFn | None = None


Handler = Callable[[Any, ToolContext], Awaitable[msgspec.Struct]]


def _object_schema(t: type) -> dict[str, Any]:
    """An object schema for `t` with its `$defs` at the top, as MCP wants a tool schema."""
    schema = msgspec.json.schema(t)
    defs = dict(schema.get("$defs", {}))
    name = schema["$ref"].rsplit("/", 1)[-1]
    top = dict(defs.pop(name))
    if defs:
        top["$defs"] = defs
    return top


@dataclass(frozen=True)
class Tool:
    """One tool: its wire description and what runs it."""

    name: str
    title: str
    description: str
    input_type: type
    output_type: type
    handler: Handler
    read_only: bool = False
    destructive: bool = False
    idempotent: bool = False
    #: Reaches beyond this machine (a model API through a CLI).
    open_world: bool = False

    def describe(self) -> dict[str, Any]:
        """The tools/list entry."""
        return {
            "name": self.name,
            "title": self.title,
            "description": self.description,
            "inputSchema": _object_schema(self.input_type),
            "outputSchema": _object_schema(self.output_type),
            "annotations": {
                "title": self.title,
                "readOnlyHint": self.read_only,
                "destructiveHint": self.destructive,
                "idempotentHint": self.idempotent,
                "openWorldHint": self.open_world,
            },
        }

    def decode(self, arguments: dict[str, Any] | None) -> Any:
        """The arguments as the tool's input type (raises msgspec.ValidationError)."""
        return msgspec.convert(unset_zero_values(arguments or {}, self.input_type),
                               self.input_type)


def wants_stream(name: str, arguments: Any) -> bool:
    """Whether a call asks for streaming: `output_format: stream-json` on clinvk_prompt (as
    clinvoker gates it), `stream: true` on parallel, chain and compare."""
    if not isinstance(arguments, dict):
        return False
    if name == "clinvk_prompt":
        value = arguments.get("output_format")
        return isinstance(value, str) and value.strip().lower() == "stream-json"
    if name in ("clinvk_parallel", "clinvk_chain", "clinvk_compare"):
        return arguments.get("stream") is True
    return False


def describe_event(event: ev.StreamEvent) -> str | None:
    """A one-line progress message for a CLI event; None for events not worth one."""
    if isinstance(event, ev.Init):
        return f"started (model {event.model})" if event.model else "started"
    if isinstance(event, (ev.TextDelta, ev.Message)):
        return event.text
    if isinstance(event, ev.ToolUse):
        return f"Using tool: {event.name}"
    if isinstance(event, ev.ToolResult):
        return "Tool error" if event.is_error else "Tool result"
    if isinstance(event, ev.Retry):
        return f"retrying the model API call (attempt {event.attempt}) {event.message}".strip()
    if isinstance(event, ev.Fallback):
        return f"{event.failed} failed ({event.reason}); trying {event.next}"
    if isinstance(event, (ev.Notice, ev.Error)):
        return event.message
    return None


def describe_progress(event: Progress) -> str:
    """A one-line progress message for an orchestration event."""
    if isinstance(event, RunStarted):
        label = f" {event.name}" if event.name else ""
        return f"run {event.index}{label} ({event.backend}) started"
    if isinstance(event, RunText):
        return event.text
    assert isinstance(event, RunFinished)
    o = event.outcome
    return f"run {o.index} ({o.backend}) {o.status}"


def _stream_line(event: ev.StreamEvent, backend: str) -> dict[str, Any]:
    content = msgspec.structs.asdict(event)
    session_id = content.pop("session_id", None)
    line = StreamLine(type=type(event).__struct_config__.tag, backend=backend,
                      session_id=session_id, content=content)
    return msgspec.to_builtins(line)


class Tools:
    """The nine tools bound to the services."""

    def __init__(self, services: Services, health: Callable[[], Awaitable[Health]]) -> None:
        self.services = services
        self.health = health
        self.by_name = {t.name: t for t in self._tools()}

    def get(self, name: str) -> Tool | None:
        return self.by_name.get(name)

    def _tools(self) -> list[Tool]:
        return [
            Tool(
                "clinvk_prompt", "Ask one coding agent",
                "Run one prompt on one AI coding agent CLI on this machine — `claude` (Claude "
                "Code), `codex` (OpenAI Codex CLI) or `gemini` (Gemini CLI) — and get its "
                "final answer. Use it for a second opinion from another agent, or to hand a "
                "self-contained task to one. The agent works in `workdir` (default: the "
                "server's) with its own tools, so it may read and, with approval_mode/"
                "sandbox_mode allowing it, change files there. A run takes seconds to minutes "
                "and spends that agent's model tokens. The answer carries a `session_id`: pass "
                "it back to continue the same conversation (unless `ephemeral`). "
                "`output_format: stream-json` streams the agent's events as log "
                "notifications; a progressToken gets progress notifications.",
                PromptRequest, PromptResponse, self._prompt, open_world=True,
            ),
            Tool(
                "clinvk_parallel", "Run prompts in parallel",
                "Run several independent prompts at once, each on its own agent (e.g. the same "
                "review on claude, codex and gemini, or different tasks), and get every result "
                "by position. Costs the sum of the runs' tokens; takes as long as the slowest "
                "run. One task's failure is its own result unless fail_fast. Runs are "
                "ephemeral (no sessions kept).",
                ParallelBody, ParallelResponse, self.parallel_response, open_world=True,
            ),
            Tool(
                "clinvk_chain", "Run prompts in sequence",
                "Run steps one after another, each on its chosen agent, where a step's prompt "
                "can use the previous step's answer as `{{previous}}` (e.g. codex drafts, "
                "claude reviews the draft, gemini summarises). Takes the sum of the steps' "
                "times and tokens. Steps are ephemeral.",
                ChainBody, ChainResponse, self.chain_response, open_world=True,
            ),
            Tool(
                "clinvk_compare", "Compare agents on one prompt",
                "Send the same prompt to several agents (all at once unless `sequential`) and "
                "get their answers side by side, to compare approaches or pick the best. "
                "Costs one run per backend. Ephemeral.",
                CompareBody, CompareResponse, self.compare_response, open_world=True,
            ),
            Tool(
                "clinvk_backends", "List agents",
                "List the agent CLIs clinvk knows (claude, codex, gemini) and whether each is "
                "installed and enabled here, with its path and version. Cheap; use it before "
                "choosing a backend.",
                NoArguments, BackendsResponse, self._backends, read_only=True, idempotent=True,
            ),
            Tool(
                "clinvk_sessions", "List sessions",
                "List clinvk's kept conversations, newest first, optionally filtered by backend "
                "or status and paged with limit/offset. Cheap. Use it to find a session_id to "
                "continue with clinvk_prompt.",
                SessionQuery, SessionsResponse, self._sessions, read_only=True, idempotent=True,
            ),
            Tool(
                "clinvk_session_get", "Get a session",
                "Get one kept conversation by its id (or a unique prefix): backend, working "
                "directory, first prompt, turn count, token usage. Cheap.",
                SessionRef, Session, self._session_get, read_only=True, idempotent=True,
            ),
            Tool(
                "clinvk_session_delete", "Delete a session",
                "Delete one kept conversation by its id (or a unique prefix); it can no longer "
                "be continued. Cheap.",
                SessionRef, DeletedResponse, self._session_delete, destructive=True,
            ),
            Tool(
                "clinvk_health", "Server health",
                "clinvk's health: ok, degraded (some agent CLI unavailable) or unhealthy "
                "(session store unavailable), with each backend's availability. Cheap.",
                NoArguments, Health, self._health, read_only=True, idempotent=True,
            ),
        ]

    # -- handlers ---------------------------------------------------------------------

    async def _prompt(self, request: PromptRequest, ctx: ToolContext) -> PromptResponse:
        stream = request.output_format == "stream-json" and ctx.log is not None
        on_event = None
        if stream or ctx.progress is not None:
            backend = request.backend
            streamed = False  # text of the current message already went out piece by piece

            async def on_event(event: ev.StreamEvent) -> None:
                nonlocal backend, streamed
                # A whole message after its deltas would say the text twice.
                repeat = isinstance(event, ev.Message) and streamed
                streamed = isinstance(event, ev.TextDelta) or (streamed and not repeat)
                if ctx.progress is not None and not repeat:
                    message = describe_event(event)
                    if message:
                        await ctx.progress(message)
                # Completion is the tool's result, as clinvoker does it: no done/usage lines.
                terminal = isinstance(event, (ev.Done, ev.Usage))
                if stream and ctx.log is not None and not terminal:
                    level = "error" if isinstance(event, ev.Error) else "info"
                    await ctx.log(level, _stream_line(event, backend))
                if isinstance(event, ev.Fallback):
                    backend = event.next.partition("/")[0]

        result = await self.services.prompt.run(request, on_event=on_event)
        return prompt_response(result)

    def _sink(self, body: Any, ctx: ToolContext, lines: Any):
        stream = body.stream is True and ctx.log is not None
        if not stream and ctx.progress is None:
            return None

        async def sink(event: Progress) -> None:
            if ctx.progress is not None:
                await ctx.progress(describe_progress(event))
            if stream and ctx.log is not None:
                await ctx.log("info", msgspec.to_builtins(lines.line(event)))

        return sink

    async def parallel_response(self, body: ParallelBody, ctx: ToolContext) -> ParallelResponse:
        work = ParallelRequest(tasks=body.tasks, max_parallel=body.max_parallel,
                               fail_fast=body.fail_fast, dry_run=body.dry_run)
        return parallel_response(await self.services.parallel.run(work, self._sink(body, ctx, PARALLEL_LINES)))

    async def chain_response(self, body: ChainBody, ctx: ToolContext) -> ChainResponse:
        work = ChainRequest(steps=body.steps, stop_on_failure=body.stop_on_failure,
                            pass_working_dir=body.pass_working_dir, dry_run=body.dry_run)
        return chain_response(await self.services.chain.run(work, self._sink(body, ctx, CHAIN_LINES)))

    async def compare_response(self, body: CompareBody, ctx: ToolContext) -> CompareResponse:
        work = CompareRequest(prompt=body.prompt, backends=body.backends,
                              sequential=body.sequential, workdir=body.workdir,
                              model=body.model, dry_run=body.dry_run)
        return compare_response(await self.services.compare.run(work, self._sink(body, ctx, COMPARE_LINES)))

    async def _backends(self, _: NoArguments, ctx: ToolContext) -> BackendsResponse:
        return BackendsResponse(backends=[
            BackendEntry(name=b.name, available=b.available, model=b.model, path=b.path,
                         version=b.version)
            for b in self.services.backends()
        ])

    async def _sessions(self, query: SessionQuery, ctx: ToolContext) -> SessionsResponse:
        page = await self.services.sessions.list(query)
        return SessionsResponse(sessions=page.sessions, total=page.total, limit=page.limit,
                                offset=page.offset)

    async def _session_get(self, ref: SessionRef, ctx: ToolContext) -> Session:
        return await self.services.sessions.get(ref.id)

    async def _session_delete(self, ref: SessionRef, ctx: ToolContext) -> DeletedResponse:
        return DeletedResponse(deleted=True, id=await self.services.sessions.delete(ref.id))

    async def _health(self, _: NoArguments, ctx: ToolContext) -> Health:
        return await self.health()
