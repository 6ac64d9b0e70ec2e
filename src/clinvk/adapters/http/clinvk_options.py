"""`clinvk` options carried in the body of OpenAI and Anthropic requests (the SDKs'
`extra_body`), shared by both chat dialects."""

from __future__ import annotations

from typing import Annotated

import msgspec

from clinvk.domain.models import ApprovalMode, Effort, PositiveInt, SandboxMode


class ClinvkOptions(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """clinvk's own options, sent as `"clinvk": {...}` in the body."""

    workdir: str | None = None
    approval_mode: ApprovalMode = "default"
    sandbox_mode: SandboxMode = "default"
    max_turns: PositiveInt | None = None
    #: Continue this clinvk session: only the turns after the last assistant turn are sent;
    #: the CLI resumes its own session.
    session_id: str | None = None
    #: Keep no session for this request.
    ephemeral: bool = False
    #: The CLI's own retry budget for failed model-API calls; None = configured / CLI default.
    max_retries: Annotated[int, msgspec.Meta(ge=0)] | None = None
    #: `backend` or `backend/model` entries tried in order when the run fails retryably
    #: before any text was sent.
    fallback: list[str] = msgspec.field(default_factory=list)
    #: Reasoning effort, over the dialect's own field (`reasoning_effort`,
    #: `output_config.effort`); each CLI maps it onto its own knob.
    effort: Effort | None = None
    #: With client tools: whether the CLI keeps its own tools too (None = server.builtin_tools).
    builtin_tools: bool | None = None
