"""The client-tool parts of a Responses request and answer: its `function` tools and
`tool_choice`, the `function_call_output` items it sends back, and the `function_call`
items of an answer. Pure reading and writing; responses_tools.py runs them."""

from __future__ import annotations

from typing import Any

import msgspec

from clinvk.adapters.http.openai.responses_schemas import (
    OpenAIResponse,
    OpenAIResponsesRequest,
    ResponsesFunctionCall,
    ResponsesFunctionCallItem,
    ResponsesFunctionCallOutputItem,
    ResponsesInputItem,
    ResponsesLocalShellCallItem,
    ResponsesMessageItem,
)
from clinvk.adapters.http.openai.responses_translate import content_text, decode_item
from clinvk.domain.chat import tool_call_text
from clinvk.domain.errors import InvalidRequest
from clinvk.domain.tool_runs import ToolRunService
from clinvk.domain.tools import (
    ClientTool,
    ToolCall,
    ToolChoice,
    ToolOutcome,
    check_tools,
)

_encode = msgspec.json.Encoder().encode


def function_entries(body: OpenAIResponsesRequest) -> list[tuple[int, dict[str, Any]]]:
    entries = []
    for i, entry in enumerate(body.tools or ()):
        if not isinstance(entry, dict):
            raise InvalidRequest(f"tools[{i}] must be an object", field=f"tools[{i}]")
        if entry.get("type") == "function":
            entries.append((i, entry))
    return entries


def client_tools(body: OpenAIResponsesRequest) -> list[ClientTool]:
    """The request's `function` tools (other kinds are not offered to the model)."""
    tools, fields = [], []
    for i, entry in function_entries(body):
        field = f"tools[{i}]"
        name, params = entry.get("name"), entry.get("parameters")
        if not isinstance(name, str):
            raise InvalidRequest(f"{field}.name must be a string", field=f"{field}.name")
        if params is None:
            params = {"type": "object"}
        if not isinstance(params, dict):
            raise InvalidRequest(f"invalid JSON Schema: {field}.parameters must be an object",
                                 field=f"{field}.parameters")
        strict = entry.get("strict")
        if strict is not None and not isinstance(strict, bool):
            raise InvalidRequest(f"{field}.strict must be a boolean", field=f"{field}.strict")
        description = entry.get("description")
        if description is not None and not isinstance(description, str):
            raise InvalidRequest(f"{field}.description must be a string",
                                 field=f"{field}.description")
        tools.append(ClientTool(name=name, description=description or "",
                                parameters=params or {"type": "object"}))
        fields.append(field)
    check_tools(tools, fields)
    return tools


def tool_choice(body: OpenAIResponsesRequest, names: list[str]) -> ToolChoice:
    """`auto`, `none`, `required` or a function's name. A hosted tool's choice (not a
    function) is `auto`; `allowed_tools` is its `mode` (the subset is not enforced)."""
    choice = body.tool_choice
    if choice is None:
        return "auto"
    if isinstance(choice, str):
        if choice in ("auto", "none", "required"):
            return choice
        raise InvalidRequest("tool_choice must be 'auto', 'none', 'required' or an object",
                             field="tool_choice")
    kind = choice.get("type")
    if kind == "function":
        name = choice.get("name")
        if name not in names:
            raise InvalidRequest(
                f"tool_choice names a function that is not in tools: {name!r}",
                field="tool_choice")
        return name
    if kind == "allowed_tools":
        mode = choice.get("mode", "auto")
        if mode not in ("auto", "required"):
            raise InvalidRequest("tool_choice.mode must be 'auto' or 'required'",
                                 field="tool_choice.mode")
        return mode
    return "auto"


def _items(body: OpenAIResponsesRequest) -> list[tuple[int, ResponsesInputItem]]:
    if isinstance(body.input, str):
        return []
    decoded = ((i, decode_item(raw, f"input[{i}]")) for i, raw in enumerate(body.input))
    return [(i, item) for i, item in decoded if item is not None]


def tool_results(body: OpenAIResponsesRequest, runs: ToolRunService,
                 earlier_calls: frozenset[str] = frozenset()) -> list[ToolOutcome]:
    """The `function_call_output` items after the last message (the results the client
    sends now); each must answer a call of the input, of the stored `previous_response_id`
    (`earlier_calls`), or one a parked run waits for."""
    items = _items(body)
    start = 0
    for k in range(len(items) - 1, -1, -1):
        if isinstance(items[k][1], ResponsesMessageItem):
            start = k + 1
            break
    known = {item.call_id for _, item in items
             if isinstance(item, (ResponsesFunctionCallItem, ResponsesLocalShellCallItem))}
    known |= earlier_calls
    results = []
    for i, item in items[start:]:
        if not isinstance(item, ResponsesFunctionCallOutputItem):
            continue
        if item.call_id not in known and not runs.knows(item.call_id):
            raise InvalidRequest(
                f"input[{i}].call_id {item.call_id!r} answers no function_call of the input "
                "and no run waits for it (it ended: timed out, or the server restarted), "
                "so there is nothing to resume or replay; send the whole input, the "
                "function_call items included", field=f"input[{i}].call_id",
            )
        text = content_text(item.output, f"input[{i}].output")
        results.append(ToolOutcome(call_id=item.call_id, output=text))
    return results


def only_results_follow(body: OpenAIResponsesRequest) -> bool:
    """Whether the input ends with the results (no message after them): a parked run can
    only be given results, so a new message means a fresh run."""
    items = _items(body)
    return bool(items) and not isinstance(items[-1][1], ResponsesMessageItem)


def applies(body: OpenAIResponsesRequest, runs: ToolRunService | None) -> bool:
    """Whether this request goes through client tools: it offers function tools, or it
    carries results a parked run waits for."""
    if runs is None:
        return False
    if any(isinstance(t, dict) and t.get("type") == "function" for t in body.tools or ()):
        return True
    return not isinstance(body.input, str) and any(
        isinstance(raw, dict) and raw.get("type") == "function_call_output"
        and isinstance(raw.get("call_id"), str) and runs.knows(raw["call_id"])
        for raw in body.input)


def function_calls(response_id: str, calls: tuple[ToolCall, ...]) -> list[ResponsesFunctionCall]:
    """The output items of the CLI's calls; their ids end with the response id's tail (as
    the message's do), so an `item_reference` to one finds its stored response."""
    tail = response_id.removeprefix("resp_")
    return [ResponsesFunctionCall(id=f"fc{n}_{tail}", call_id=c.id, name=c.name,
                                  arguments=_encode(c.arguments).decode())
            for n, c in enumerate(calls)]


def answer_text(response: OpenAIResponse) -> str:
    """The answer as the history keeps it: its text, then a line per call."""
    lines = []
    for item in response.output:
        if isinstance(item, ResponsesFunctionCall):
            lines.append(tool_call_text(item.name, item.call_id, item.arguments))
        else:
            lines += [part.text for part in item.content]
    return "\n".join(lines)
