"""Wire types of the native REST API (`/api/v1`). Requests forbid unknown fields."""

from __future__ import annotations

from typing import Any

import msgspec

from clinvk.adapters.http.native.go_zero import GoTolerantDecoder
from clinvk.domain.models import PromptRequest, Session, TokenUsage
from clinvk.domain.tools import ToolCall


class PromptResponse(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Answer of POST /api/v1/prompt (`session_id` absent when ephemeral, as in clinvoker)."""

    backend: str
    exit_code: int
    duration_ms: int
    output: str
    token_usage: TokenUsage
    model: str | None = None
    stop_reason: str = "end"
    error: str | None = None
    command: list[str] | None = None
    session_id: str | None = None
    #: The CLI's calls of the request's `tools` (with `stop_reason: "tool_calls"`): the
    #: run waits for their results (`tool_results`).
    tool_calls: list[ToolCall] | None = None


class BackendEntry(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One backend of GET /api/v1/backends (clinvoker's `name`, `available`, plus clinvk's)."""

    name: str
    available: bool
    model: str | None = None
    #: The CLI executable found for it, and what its `--version` said.
    path: str | None = None
    version: str | None = None


class BackendsResponse(msgspec.Struct, kw_only=True):
    backends: list[BackendEntry]


class SessionsResponse(msgspec.Struct, kw_only=True):
    sessions: list[Session]
    total: int
    limit: int
    offset: int


class DeletedResponse(msgspec.Struct, kw_only=True):
    deleted: bool
    id: str


class ProblemDetail(msgspec.Struct, kw_only=True):
    """One invalid field, as clinvoker's problem bodies list them."""

    message: str
    #: Where in the request: `body.<field>`, e.g. `body.tasks[0].backend`.
    location: str


class Problem(msgspec.Struct, kw_only=True, omit_defaults=True):
    """An error, as RFC 9457 problem details plus a machine `code` and the offending `field`."""

    title: str
    status: int
    detail: str
    code: str
    field: str | None = None
    #: Same text as `detail`; prompt clients read `error`.
    error: str | None = None
    session_id: str | None = None
    backend: str | None = None
    exit_code: int | None = None
    output: str | None = None
    retry_after: float | None = None
    errors: list[ProblemDetail] | None = None


class StreamLine(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One NDJSON line of a streamed prompt."""

    type: str
    backend: str
    session_id: str | None = None
    content: dict[str, Any] = {}


class NativeTool(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A client tool: its name, what it does, its input's JSON Schema."""

    name: str
    description: str = ""
    parameters: dict[str, Any] = msgspec.field(default_factory=lambda: {"type": "object"})


class NativeToolResult(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The client's result of one tool call (`call_id`: the call's `id`)."""

    call_id: str
    output: str = ""
    is_error: bool = False


class NativePromptRequest(PromptRequest, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """POST /api/v1/prompt: a PromptRequest plus client tools (clinvk additions)."""

    #: Required, except in a request that only carries `tool_results`.
    prompt: str = ""
    #: Tools the CLI's model may call; the answer is then its calls, and the run waits.
    tools: list[NativeTool] | None = None
    #: `auto` (default), `none`, `required` or a tool's name (asked, not enforced).
    tool_choice: str | None = None
    #: Keep the CLI's own tools beside the client's (default `server.builtin_tools`).
    builtin_tools: bool | None = None
    #: Results of the calls of an earlier answer: the run waiting for them goes on.
    tool_results: list[NativeToolResult] | None = None

    def domain(self) -> PromptRequest:
        """The request without its tool fields."""
        return PromptRequest(**{f: getattr(self, f) for f in PromptRequest.__struct_fields__})


prompt_decoder = GoTolerantDecoder(NativePromptRequest)
