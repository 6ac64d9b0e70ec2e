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

# -- orchestration (parallel, chain) ------------------------------------------------------

#: A parallel request's tasks as (backend, prompt marker) pairs for tests.unit ScriptedRunner:
#: "[fail]" fails, "[slow]" streams slowly, "" answers at once.
task_plans = st.lists(
    st.tuples(
        st.sampled_from(["claude", "codex", "gemini"]),
        st.sampled_from(["", "[fail]", "[slow]"]),
    ),
    min_size=1,
    max_size=6,
)

_step_names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_-", min_size=1, max_size=8)

#: Literal template text: anything (braces included) that holds no "{{" or "}}", so it can
#: neither be nor complete a placeholder.
template_literals = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",)), max_size=30
).filter(lambda s: "{{" not in s and "}}" not in s)

#: A placeholder as (kind, name, how it is written): "previous" or a step reference,
#: optionally with spaces inside the braces.
template_placeholders = st.one_of(
    st.tuples(st.just("previous"), st.none(), st.sampled_from(["{{previous}}", "{{ previous }}"])),
    _step_names.flatmap(
        lambda name: st.tuples(
            st.just("step"), st.just(name),
            st.sampled_from([f"{{{{steps.{name}}}}}", f"{{{{ steps.{name}  }}}}"]),
        )
    ),
)

#: A template as alternating literal and placeholder parts (literals never adjacent).
template_parts = st.lists(
    st.tuples(template_literals, template_placeholders), max_size=6
).flatmap(lambda pairs: template_literals.map(lambda tail: (pairs, tail)))

#: Arrival patterns for the warm pool: (seconds since the previous request, seconds until its
#: first text, seconds it runs in all), in virtual time.
pool_arrivals = st.lists(
    st.tuples(
        st.sampled_from([0.0, 0.05, 0.3, 1.0, 5.0, 90.0]),
        st.floats(min_value=0.0, max_value=1.0),
        st.floats(min_value=0.0, max_value=4.0),
    ),
    min_size=1,
    max_size=30,
)

#: Operations on the hot sessions: (what, which session, seconds since the previous one).
hot_session_ops = st.lists(
    st.tuples(
        st.sampled_from(["turn", "turn", "turn", "fail", "delete", "tick"]),
        st.sampled_from(["s1", "s2", "s3", "s4", "s5"]),
        st.sampled_from([0.0, 1.0, 30.0, 200.0]),
    ),
    max_size=40,
)

# -- client tools (Responses API and native API) -------------------------------------------

#: JSON values a client can send (no infinities: JSON has none).
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                 max_size=3),
    max_leaves=8,
)

_tool_names = st.sampled_from(["get_weather", "get_time", "", "bad name", "x" * 65]) | st.text(
    max_size=10)
_schemas = st.one_of(
    _json,
    st.fixed_dictionaries({}, optional={
        "type": st.sampled_from(["object", "string", "nope"]) | _json,
        "properties": st.dictionaries(st.text(max_size=5), _json, max_size=3)
        | _json,
        "required": st.lists(st.text(max_size=5), max_size=2) | _json,
    }),
)

#: `tools` / `tool_choice` / input-item fragments of a Responses request, well formed or not.
responses_tool_fields = st.fixed_dictionaries({}, optional={
    "tools": st.lists(st.one_of(
        st.fixed_dictionaries({"type": st.just("function"), "name": _tool_names | _json},
                              optional={"parameters": _schemas, "strict": _json,
                                        "description": _json}),
        st.dictionaries(st.sampled_from(["type", "name", "tools"]), _json, max_size=3),
        _json,
    ), max_size=3),
    "tool_choice": st.sampled_from(["auto", "none", "required", "any"]) | _json
    | st.fixed_dictionaries({"type": st.sampled_from(["function", "allowed_tools", "x"])},
                            optional={"name": _tool_names, "mode": _json}),
    "input": st.lists(st.one_of(
        st.just({"role": "user", "content": "hi"}),
        st.fixed_dictionaries({"type": st.sampled_from(["function_call_output",
                                                        "function_call"])},
                              optional={"call_id": st.text(max_size=8) | _json,
                                        "output": _json, "name": _tool_names,
                                        "arguments": _json}),
    ), min_size=1, max_size=4),
})

#: `tools` / `tool_choice` / `tool_results` of a native prompt, well formed or not.
native_tool_fields = st.fixed_dictionaries({}, optional={
    "tools": st.lists(st.one_of(
        st.fixed_dictionaries({"name": _tool_names | _json},
                              optional={"parameters": _schemas, "description": _json}),
        _json,
    ), max_size=3) | _json,
    "tool_choice": st.sampled_from(["auto", "none", "required", "get_weather"]) | _json,
    "builtin_tools": _json,
    "tool_results": st.lists(st.fixed_dictionaries(
        {}, optional={"call_id": st.text(max_size=8) | _json, "output": _json,
                      "is_error": _json}), max_size=2) | _json,
})
