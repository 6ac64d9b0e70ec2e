"""Wire types of OpenAI's Responses API (`/openai/v1/responses`).

As for chat completions, requests tolerate unknown fields and declare OpenAI's own fields
with their types (a wrong type is a 400 even where clinvk then ignores the value). Input
items are decoded one by one (`responses.py`), so an error can name `input[i]`.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from clinvk.adapters.http.clinvk_options import ClinvkOptions
from clinvk.domain.models import PositiveInt

# -- request: input items --------------------------------------------------------------


class _Part(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    pass


class ResponsesInputTextPart(_Part, tag="input_text"):
    text: str


class ResponsesOutputTextPart(_Part, tag="output_text"):
    """An earlier answer's text, sent back in an assistant message."""

    text: str


class ResponsesRefusalPart(_Part, tag="refusal"):
    refusal: str


class ResponsesInputImagePart(_Part, tag="input_image"):
    """An image: a data: URL or an http(s) URL (fetched only when
    `server.fetch_remote_images` is on); an uploaded `file_id` is refused."""

    image_url: str | None = None
    file_id: str | None = None
    detail: str | None = None


# Parts clinvk cannot pass to a CLI yet; decoded only so the error can name them.
class ResponsesInputFilePart(_Part, tag="input_file"):
    pass


class ResponsesInputAudioPart(_Part, tag="input_audio"):
    pass


ResponsesContentPart = (
    ResponsesInputTextPart
    | ResponsesOutputTextPart
    | ResponsesRefusalPart
    | ResponsesInputImagePart
    | ResponsesInputFilePart
    | ResponsesInputAudioPart
)
ResponsesContent = str | list[ResponsesContentPart]


class ResponsesMessageItem(msgspec.Struct, frozen=True, kw_only=True):
    """A message (`type` may be left out, as the SDKs' "easy" input messages do)."""

    type: Literal["message"] = "message"
    role: Literal["user", "system", "developer", "assistant"]
    content: ResponsesContent
    id: str | None = None
    status: str | None = None


class ResponsesFunctionCallItem(msgspec.Struct, frozen=True, kw_only=True):
    """A call of one of the client's tools, made by an earlier model turn."""

    type: Literal["function_call"]
    call_id: str
    name: str
    arguments: str = ""
    id: str | None = None
    status: str | None = None


class ResponsesFunctionCallOutputItem(msgspec.Struct, frozen=True, kw_only=True):
    """The client's result of such a call."""

    type: Literal["function_call_output"]
    call_id: str
    output: ResponsesContent
    id: str | None = None
    status: str | None = None


class ResponsesCustomToolCallItem(msgspec.Struct, frozen=True, kw_only=True):
    """A call of a free-form ("custom") client tool: codex's `apply_patch`, `exec`, ..."""

    type: Literal["custom_tool_call"]
    call_id: str
    name: str
    input: str = ""
    id: str | None = None
    status: str | None = None


class ResponsesCustomToolCallOutputItem(msgspec.Struct, frozen=True, kw_only=True):
    """The client's result of a custom tool call."""

    type: Literal["custom_tool_call_output"]
    call_id: str
    output: ResponsesContent
    id: str | None = None


class ResponsesLocalShellCallItem(msgspec.Struct, frozen=True, kw_only=True):
    """A `local_shell` call (its result comes back as a function_call_output)."""

    type: Literal["local_shell_call"]
    call_id: str
    action: dict[str, Any]
    id: str | None = None
    status: str | None = None


ResponsesInputItem = (
    ResponsesMessageItem
    | ResponsesFunctionCallItem
    | ResponsesFunctionCallOutputItem
    | ResponsesCustomToolCallItem
    | ResponsesCustomToolCallOutputItem
    | ResponsesLocalShellCallItem
)

#: Input item types that are accepted and left out of the prompt: they carry no text a CLI
#: could use. `reasoning` and `compaction` hold a model's encrypted state (only the API that
#: made them can read it), `additional_tools` declares client tools (codex sends its tools
#: this way; the CLIs run their own, as for `tools`), and `web_search_call` records a hosted
#: tool's run. docs/openai.md lists them.
IGNORED_ITEM_TYPES = frozenset({"reasoning", "compaction", "additional_tools",
                                "web_search_call"})

# -- request ---------------------------------------------------------------------------


class OpenAIResponsesRequest(msgspec.Struct, frozen=True, kw_only=True):
    """POST /openai/v1/responses."""

    model: str
    #: A user message as a string, or a list of input items (each checked on its own).
    input: str | list[dict[str, Any]]
    instructions: str | None = None
    stream: bool | None = None
    previous_response_id: str | None = None
    #: False: the response is not kept (not retrievable, not a previous_response_id).
    store: bool | None = None
    max_output_tokens: PositiveInt | None = None
    metadata: dict[str, Any] | None = None
    #: Accepted and typed, not honoured: the CLIs have no such knob, or run their own
    #: tools (docs/openai.md lists each).
    temperature: float | None = None
    top_p: float | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    reasoning: dict[str, Any] | None = None
    text: dict[str, Any] | None = None
    truncation: str | None = None
    user: str | None = None
    include: list[str] | None = None
    service_tier: str | None = None
    safety_identifier: str | None = None
    prompt_cache_key: str | None = None
    top_logprobs: int | None = None
    stream_options: dict[str, Any] | None = None
    #: Refused when true: every request runs while the client waits.
    background: bool | None = None
    clinvk: ClinvkOptions | None = None


responses_request_decoder = msgspec.json.Decoder(OpenAIResponsesRequest)

# -- response --------------------------------------------------------------------------

ResponseStatus = Literal["completed", "failed", "in_progress", "incomplete"]


class ResponsesOutputText(msgspec.Struct, kw_only=True):
    type: Literal["output_text"] = "output_text"
    text: str
    annotations: list[dict[str, Any]] = msgspec.field(default_factory=list)
    logprobs: list[dict[str, Any]] = msgspec.field(default_factory=list)


class ResponsesOutputMessage(msgspec.Struct, kw_only=True, tag_field="type", tag="message"):
    id: str
    status: Literal["completed", "in_progress", "incomplete"]
    role: Literal["assistant"] = "assistant"
    content: list[ResponsesOutputText]


class ResponsesFunctionCall(msgspec.Struct, kw_only=True, tag_field="type",
                            tag="function_call"):
    """A call of one of the client's function tools; the client answers it with a
    `function_call_output` input item carrying the same `call_id`."""

    id: str
    call_id: str
    name: str
    #: The arguments as a JSON text, as OpenAI sends them.
    arguments: str
    status: Literal["completed", "in_progress", "incomplete"] = "completed"


ResponsesOutputItem = ResponsesOutputMessage | ResponsesFunctionCall


class ResponsesInputTokensDetails(msgspec.Struct, kw_only=True):
    cached_tokens: int


class ResponsesOutputTokensDetails(msgspec.Struct, kw_only=True):
    reasoning_tokens: int


class ResponsesUsage(msgspec.Struct, kw_only=True):
    input_tokens: int
    input_tokens_details: ResponsesInputTokensDetails
    output_tokens: int
    output_tokens_details: ResponsesOutputTokensDetails
    total_tokens: int


class ResponsesError(msgspec.Struct, kw_only=True):
    code: str
    message: str


class ResponsesIncompleteDetails(msgspec.Struct, kw_only=True):
    reason: Literal["max_output_tokens", "content_filter"]


class OpenAIResponse(msgspec.Struct, kw_only=True):
    """A response object (the body of POST/GET, and inside the stream's lifecycle events)."""

    id: str
    object: Literal["response"] = "response"
    created_at: int
    status: ResponseStatus
    error: ResponsesError | None = None
    incomplete_details: ResponsesIncompleteDetails | None = None
    instructions: str | None = None
    max_output_tokens: int | None = None
    model: str
    output: list[ResponsesOutputItem]
    parallel_tool_calls: bool = True
    previous_response_id: str | None = None
    store: bool = True
    temperature: float | None = None
    top_p: float | None = None
    tool_choice: str | dict[str, Any] = "auto"
    tools: list[dict[str, Any]] = msgspec.field(default_factory=list)
    truncation: str = "disabled"
    usage: ResponsesUsage | None = None
    user: str | None = None
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)


class OpenAIResponseDeleted(msgspec.Struct, kw_only=True):
    id: str
    object: Literal["response"] = "response"
    deleted: bool = True


class ResponsesStreamEvent(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One server-sent event of a streamed response; `type` is also the SSE event name.

    Which fields an event carries depends on its type, as on OpenAI's API.
    """

    type: str
    sequence_number: int
    response: OpenAIResponse | msgspec.UnsetType = msgspec.UNSET
    output_index: int | msgspec.UnsetType = msgspec.UNSET
    content_index: int | msgspec.UnsetType = msgspec.UNSET
    item_id: str | msgspec.UnsetType = msgspec.UNSET
    item: ResponsesOutputItem | msgspec.UnsetType = msgspec.UNSET
    part: ResponsesOutputText | msgspec.UnsetType = msgspec.UNSET
    delta: str | msgspec.UnsetType = msgspec.UNSET
    text: str | msgspec.UnsetType = msgspec.UNSET
    #: `response.function_call_arguments.done`: the call's whole arguments and its name.
    arguments: str | msgspec.UnsetType = msgspec.UNSET
    name: str | msgspec.UnsetType = msgspec.UNSET
    logprobs: list[dict[str, Any]] | msgspec.UnsetType = msgspec.UNSET
