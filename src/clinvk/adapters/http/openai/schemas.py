"""Wire types of the OpenAI-compatible API (`/openai/v1`).

Requests tolerate unknown fields (real clients send extras); the fields of OpenAI's own
request are declared with their types, so a wrong type is a 400 as on OpenAI's API, even
where clinvk then ignores the value. The clinvk-only options object
(`clinvk`, the SDKs' `extra_body`) refuses unknown keys, so a typo there is a 400.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

import msgspec

from clinvk.adapters.http.clinvk_options import ClinvkOptions
from clinvk.domain.models import PositiveInt

# -- request: content parts ------------------------------------------------------------


class _Part(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    pass


class OpenAITextPart(_Part, tag="text"):
    text: str


class OpenAIRefusalPart(_Part, tag="refusal"):
    refusal: str


class OpenAIFileRef(msgspec.Struct, frozen=True, kw_only=True):
    """A `file` part's file: inline (`file_data`, base64 or a data URL) or uploaded."""

    file_data: str | None = None
    file_id: str | None = None
    filename: str | None = None


class OpenAIFilePart(_Part, tag="file"):
    """A file; carried as text when it is inline UTF-8 text, else refused."""

    file: OpenAIFileRef


class OpenAIImageUrl(msgspec.Struct, frozen=True, kw_only=True):
    """An `image_url` part's image: a `data:` URL, or an http(s) URL (fetched only when
    `server.fetch_remote_images` is on)."""

    url: str
    detail: str | None = None


class OpenAIImagePart(_Part, tag="image_url"):
    """An image, passed to the CLI as an image (the older string form is taken too)."""

    image_url: OpenAIImageUrl | str


# A part clinvk cannot pass to a CLI; decoded only so the error can name it.
class OpenAIAudioPart(_Part, tag="input_audio"):
    pass


OpenAIContentPart = Union[
    OpenAITextPart, OpenAIRefusalPart, OpenAIImagePart, OpenAIAudioPart, OpenAIFilePart
]
OpenAIContent = Union[str, list[OpenAIContentPart]]

# -- request: messages -----------------------------------------------------------------


class _Message(msgspec.Struct, frozen=True, kw_only=True, tag_field="role"):
    name: str | None = None


class OpenAISystemMessage(_Message, tag="system"):
    content: OpenAIContent


class OpenAIDeveloperMessage(_Message, tag="developer"):
    content: OpenAIContent


class OpenAIUserMessage(_Message, tag="user"):
    content: OpenAIContent


class OpenAIFunctionCall(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    #: The call's input as JSON text, as the model wrote it.
    arguments: str = ""


class OpenAICustomCall(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    input: str = ""


class OpenAIToolCall(msgspec.Struct, frozen=True, kw_only=True):
    """A call of one of the client's tools, made by an earlier model turn."""

    id: str | None = None
    type: str = "function"
    function: OpenAIFunctionCall | None = None
    custom: OpenAICustomCall | None = None


class OpenAIAssistantMessage(_Message, tag="assistant"):
    content: OpenAIContent | None = None
    refusal: str | None = None
    #: Calls of the client's own tools, made by some earlier model; carried as text.
    tool_calls: list[OpenAIToolCall] | None = None
    #: The deprecated single-call form of `tool_calls`.
    function_call: OpenAIFunctionCall | None = None


class OpenAIToolMessage(_Message, tag="tool"):
    content: OpenAIContent
    tool_call_id: str | None = None


class OpenAIFunctionMessage(_Message, tag="function"):
    """The deprecated form of a tool result (`name` is the function's)."""

    content: OpenAIContent | None = None


OpenAIMessage = Union[
    OpenAISystemMessage,
    OpenAIDeveloperMessage,
    OpenAIUserMessage,
    OpenAIAssistantMessage,
    OpenAIToolMessage,
    OpenAIFunctionMessage,
]

# -- request: the chat completion ------------------------------------------------------


class OpenAIStreamOptions(msgspec.Struct, frozen=True, kw_only=True):
    include_usage: bool | None = None


class OpenAIChatRequest(msgspec.Struct, frozen=True, kw_only=True):
    """POST /openai/v1/chat/completions."""

    model: str
    messages: Annotated[list[OpenAIMessage], msgspec.Meta(min_length=1)]
    stream: bool | None = None
    stream_options: OpenAIStreamOptions | None = None
    n: PositiveInt | None = None
    max_tokens: PositiveInt | None = None
    max_completion_tokens: PositiveInt | None = None
    metadata: dict[str, Any] | None = None
    #: Accepted and typed as on OpenAI's API (a wrong type is a 400), not honoured: the
    #: CLIs have no such knob, or run their own tools (docs/openai.md lists each).
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    functions: list[dict[str, Any]] | None = None
    function_call: str | dict[str, Any] | None = None
    response_format: dict[str, Any] | None = None
    reasoning_effort: str | None = None
    verbosity: str | None = None
    #: Output modalities; `audio` is refused (the CLIs answer in text).
    modalities: list[str] | None = None
    audio: dict[str, Any] | None = None
    prediction: dict[str, Any] | None = None
    store: bool | None = None
    service_tier: str | None = None
    user: str | None = None
    safety_identifier: str | None = None
    prompt_cache_key: str | None = None
    seed: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: str | list[str] | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logit_bias: dict[str, float] | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    web_search_options: dict[str, Any] | None = None
    clinvk: ClinvkOptions | None = None


chat_request_decoder = msgspec.json.Decoder(OpenAIChatRequest)

# -- responses -------------------------------------------------------------------------

FinishReason = Literal["stop", "length"]


class OpenAIPromptTokensDetails(msgspec.Struct, kw_only=True):
    cached_tokens: int


class OpenAICompletionTokensDetails(msgspec.Struct, kw_only=True):
    reasoning_tokens: int


class OpenAIUsage(msgspec.Struct, kw_only=True):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: OpenAIPromptTokensDetails
    completion_tokens_details: OpenAICompletionTokensDetails


class OpenAIAnswer(msgspec.Struct, kw_only=True):
    role: Literal["assistant"] = "assistant"
    content: str
    refusal: None = None


class OpenAIChoice(msgspec.Struct, kw_only=True):
    index: int = 0
    message: OpenAIAnswer
    logprobs: None = None
    finish_reason: FinishReason


class OpenAIChatCompletion(msgspec.Struct, kw_only=True):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[OpenAIChoice]
    usage: OpenAIUsage


class OpenAIDelta(msgspec.Struct, kw_only=True, omit_defaults=True):
    role: Literal["assistant"] | None = None
    content: str | None = None


class OpenAIChunkChoice(msgspec.Struct, kw_only=True):
    index: int = 0
    delta: OpenAIDelta
    logprobs: None = None
    finish_reason: FinishReason | None = None


class OpenAIChatCompletionChunk(msgspec.Struct, kw_only=True):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[OpenAIChunkChoice]
    #: Absent unless `stream_options.include_usage`; then null on all but the last chunk.
    usage: OpenAIUsage | None | msgspec.UnsetType = msgspec.UNSET


class OpenAIModel(msgspec.Struct, kw_only=True):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str


class OpenAIModelList(msgspec.Struct, kw_only=True):
    object: Literal["list"] = "list"
    data: list[OpenAIModel]


class OpenAIErrorDetail(msgspec.Struct, kw_only=True):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class OpenAIError(msgspec.Struct, kw_only=True):
    """OpenAI's error envelope, also sent as the one error chunk of a failed stream."""

    error: OpenAIErrorDetail
