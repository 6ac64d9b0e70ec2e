"""Unified stream events -> Anthropic's named server-sent events, in Anthropic's order."""

from __future__ import annotations

from clinvk.adapters.http.anthropic import translate
from clinvk.adapters.http.anthropic.errors import (
    INTERNAL_MESSAGE,
    domain_envelope,
    envelope,
)
from clinvk.adapters.http.anthropic.schemas import (
    AnthropicContentBlockDelta,
    AnthropicContentBlockStart,
    AnthropicContentBlockStop,
    AnthropicMessage,
    AnthropicMessageDelta,
    AnthropicMessageDeltaBody,
    AnthropicMessageStart,
    AnthropicMessageStop,
    AnthropicPing,
    AnthropicTextBlock,
    AnthropicTextDelta,
    AnthropicUsage,
    sse,
)
from clinvk.domain import events as ev
from clinvk.domain.chat import TextStream
from clinvk.domain.errors import ClinvkError
from clinvk.domain.models import PromptResult

SSE_MEDIA_TYPE = "text/event-stream; charset=utf-8"
PING = sse(AnthropicPing())


class MessageStreamWriter:
    """The SSE bytes of one streamed message: `message_start` and the text block's start
    with the first text (or the first heartbeat: `open`), one `text_delta` per piece of
    text, then the stop events (or an `error` event). `model` may change until it opens
    (a fallback answering)."""

    def __init__(self, *, id: str, model: str) -> None:
        self.id = id
        self.model = model
        self.opened = False
        self._input_tokens = 0
        self._text = TextStream()

    def open(self) -> bytes:
        """message_start and content_block_start, the first time only."""
        if self.opened:
            return b""
        self.opened = True
        snapshot = AnthropicMessage(
            id=self.id,
            content=[],
            model=self.model,
            stop_reason=None,
            usage=AnthropicUsage(input_tokens=self._input_tokens, output_tokens=0),
        )
        block = AnthropicContentBlockStart(index=0, content_block=AnthropicTextBlock(text=""))
        return sse(AnthropicMessageStart(message=snapshot)) + sse(block)

    def event(self, event: ev.StreamEvent) -> bytes:
        """The SSE bytes one unified event adds (often none)."""
        # Not a usage so far: message_delta's usage (the whole) would be added to it by
        # clients that sum the two, as LangChain does.
        if isinstance(event, ev.Usage) and not event.cumulative and not event.so_far:
            self._input_tokens = translate.usage(event.usage).input_tokens
        piece = self._text.text(event)
        if piece is None:
            return b""
        delta = AnthropicContentBlockDelta(index=0, delta=AnthropicTextDelta(text=piece))
        return self.open() + sse(delta)

    def close(self, result: PromptResult) -> bytes:
        """content_block_stop, message_delta with the stop reason and the final usage (input
        included: it was unknown at message_start), message_stop."""
        delta = AnthropicMessageDelta(
            delta=AnthropicMessageDeltaBody(stop_reason=translate.stop_reason(result.stop_reason)),
            usage=translate.usage(result.token_usage),
        )
        return (
            self.open()
            + sse(AnthropicContentBlockStop(index=0))
            + sse(delta)
            + sse(AnthropicMessageStop())
        )

    @staticmethod
    def error(exc: ClinvkError | None) -> bytes:
        """The `error` event ending a stream that already started (None: an unexpected fault)."""
        return sse(domain_envelope(exc) if exc is not None else envelope(500, INTERNAL_MESSAGE))
