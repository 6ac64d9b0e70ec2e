"""Hypothesis strategies shared by the property tests."""

from __future__ import annotations

import json

from hypothesis import strategies as st

#: Any prompt text a user could send (JSON strings cannot carry lone surrogates).
prompt_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=400
).filter(lambda s: s.strip())

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)

_EVENT_TYPES = [
    "system", "stream_event", "assistant", "user", "result", "init", "message", "tool_use",
    "tool_result", "error", "thread.started", "turn.started", "item.started",
    "item.completed", "turn.completed", "turn.failed",
]

#: Lines a CLI might print: typed JSON objects with arbitrary fields, arbitrary JSON, or junk.
cli_lines = st.one_of(
    st.builds(
        lambda t, extra: json.dumps({"type": t, **extra}).encode(),
        st.sampled_from(_EVENT_TYPES),
        st.dictionaries(
            st.sampled_from(["subtype", "event", "message", "item", "usage", "result", "content",
                             "delta", "role", "stats", "status", "error", "session_id",
                             "thread_id", "is_error", "model"]),
            json_values,
            max_size=5,
        ),
    ),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=60),
)
