"""Client tools: the tools a chat request offers its model, the calls a CLI makes to them,
and the results the client sends back. Values and pure checks only."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from clinvk.domain.errors import InvalidRequest

#: What the client allows the model to do with its tools: any (`auto`), none, at least
#: one (`required`), or this one tool (any other string: the tool's name).
ToolChoice = str

#: The MCP server name each CLI is given for the bridge (its tools show as
#: `mcp__client__<name>` in claude, `mcp_client_<name>` in gemini).
BRIDGE_SERVER = "client"

_JSON_TYPES = frozenset({"object", "array", "string", "number", "integer", "boolean", "null"})


class ClientTool(msgspec.Struct, frozen=True, kw_only=True):
    """One tool the client offers: its name, what it does, and its input's JSON Schema."""

    name: str
    description: str = ""
    parameters: dict[str, Any] = msgspec.field(default_factory=lambda: {"type": "object"})


class ToolCall(msgspec.Struct, frozen=True, kw_only=True):
    """A call of a client tool the CLI made; the client runs it and answers by `id`."""

    id: str
    name: str
    arguments: dict[str, Any] = msgspec.field(default_factory=dict)


class ToolOutcome(msgspec.Struct, frozen=True, kw_only=True):
    """The client's result for one tool call."""

    call_id: str
    output: str = ""
    is_error: bool = False


class BridgeSpec(msgspec.Struct, frozen=True, kw_only=True):
    """What a run needs to reach the client's tools: the bridge's MCP endpoint (streamable
    HTTP), the tools' names, whether the CLI keeps its own tools, and the tool choice."""

    url: str
    names: tuple[str, ...]
    server: str = BRIDGE_SERVER
    builtin_tools: bool = False
    choice: ToolChoice = "auto"
    #: Longest a call may wait for the client's result (the CLI's own MCP timeout is set
    #: above it where the CLI has one).
    result_timeout_secs: float = 300


def choice_instruction(choice: ToolChoice, names: Sequence[str]) -> str | None:
    """The system-prompt sentence that asks for a tool choice no CLI has a flag for."""
    if choice == "required":
        return "You must call at least one of the available client tools before you answer."
    if choice not in ("auto", "none") and choice in names:
        return f"You must call the tool {choice!r} before you answer."
    return None


def _schema_problem(schema: Any, where: str) -> str | None:
    """Why `schema` is not a JSON Schema clinvk can offer, or None (a structural check of
    the keywords the CLIs read: type, properties, required, items, enum)."""
    if isinstance(schema, bool):
        return None
    if not isinstance(schema, dict):
        return f"{where} must be a JSON Schema object"
    kind = schema.get("type")
    kinds = kind if isinstance(kind, list) else [kind] if kind is not None else []
    if not all(isinstance(k, str) and k in _JSON_TYPES for k in kinds):
        return f"{where}.type must be one of {', '.join(sorted(_JSON_TYPES))}"
    props = schema.get("properties")
    if props is not None:
        if not isinstance(props, dict):
            return f"{where}.properties must be an object"
        for key, sub in props.items():
            problem = _schema_problem(sub, f"{where}.properties.{key}")
            if problem:
                return problem
    required = schema.get("required")
    if required is not None and not (
        isinstance(required, list) and all(isinstance(r, str) for r in required)
    ):
        return f"{where}.required must be an array of strings"
    items = schema.get("items")
    # `items` is a schema, or (before draft 2020-12) a list of them, one per position.
    for j, item in enumerate(items if isinstance(items, list) else [items]):
        if item is None:
            continue
        where_item = f"{where}.items" + (f"[{j}]" if isinstance(items, list) else "")
        problem = _schema_problem(item, where_item)
        if problem:
            return problem
    enum = schema.get("enum")
    if enum is not None and not isinstance(enum, list):
        return f"{where}.enum must be an array"
    return None


def check_tools(
    tools: Sequence[ClientTool], fields: Sequence[str], schema_key: str = "parameters"
) -> None:
    """Refuse tools the bridge cannot offer: a name that is empty, too long or has other
    characters than letters, digits, `_` and `-`; a name given twice; a schema that is not
    a JSON Schema object. `fields[i]` names tool i in the dialect (`tools[0].function`),
    `schema_key` its schema's field."""
    seen: dict[str, int] = {}
    for i, tool in enumerate(tools):
        field = fields[i]
        name = tool.name
        if not name or len(name) > 64 or not all(c.isascii() and (c.isalnum() or c in "_-")
                                                 for c in name):
            raise InvalidRequest(
                f"{field}.name must be 1-64 letters, digits, '_' or '-'", field=f"{field}.name"
            )
        if name in seen:
            raise InvalidRequest(
                f"{field}.name {name!r} is already the name of {fields[seen[name]]}; "
                "tool names must be unique",
                field=f"{field}.name",
            )
        seen[name] = i
        problem = _schema_problem(tool.parameters, f"{field}.{schema_key}")
        if problem is None and tool.parameters.get("type", "object") != "object":
            problem = f"{field}.{schema_key}.type must be 'object' (a tool takes named arguments)"
        if problem:
            raise InvalidRequest(f"invalid JSON Schema: {problem}", field=f"{field}.{schema_key}")
