"""Go zero values in native request bodies mean "not set", as clinvoker reads them."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from clinvk.adapters.http.native.go_zero import GoTolerantDecoder, unset_zero_values
from clinvk.adapters.http.native.orchestration_schemas import ChainBody, ParallelBody
from clinvk.domain.models import PromptRequest
from tests.strategies import json_values

decoder = GoTolerantDecoder(PromptRequest)


def test_zero_values_of_optional_fields_are_dropped():
    """"", 0 (where 0 is not a valid value) and null leave optional fields at their defaults."""
    body = {"backend": "claude", "prompt": "x", "model": "", "max_turns": 0, "max_tokens": 0,
            "extra": None, "metadata": None, "approval_mode": "", "workdir": "",
            "verbose": False, "session_id": ""}
    assert decoder.decode(msgspec.json.encode(body)) == PromptRequest(backend="claude", prompt="x")


def test_required_fields_and_real_values_are_kept():
    """Required fields are never dropped, and non-zero values pass through unchanged."""
    body = {"backend": "", "prompt": "", "max_turns": 3, "verbose": True, "extra": ["--a"]}
    assert unset_zero_values(body, PromptRequest) == body


def test_nested_tasks_and_steps_are_cleaned():
    """Each parallel task and chain step is cleaned like a top-level prompt."""
    parallel = {"tasks": [{"backend": "codex", "prompt": "p", "model": "", "max_turns": 0}],
                "max_parallel": 0, "fail_fast": None}
    assert unset_zero_values(parallel, ParallelBody) == {
        "tasks": [{"backend": "codex", "prompt": "p"}]
    }
    chain = {"steps": [{"backend": "gemini", "prompt": "p", "name": "", "extra": None}],
             "pass_session_id": False}
    assert unset_zero_values(chain, ChainBody) == {
        "steps": [{"backend": "gemini", "prompt": "p"}], "pass_session_id": False
    }


def test_false_is_not_taken_for_zero():
    """`false` is a real boolean, never an int field's zero (False == 0 in Python)."""
    body = {"backend": "claude", "prompt": "x", "max_turns": False}
    with pytest.raises(msgspec.ValidationError, match="max_turns"):
        decoder.decode(msgspec.json.encode(body))


@given(st.dictionaries(st.sampled_from(
    ["backend", "prompt", "model", "max_turns", "extra", "metadata", "dry_run", "x"]
), json_values, max_size=8) | json_values)
def test_any_json_decodes_or_fails_with_a_msgspec_error(body):
    """Whatever JSON is sent, the decoder answers a request or a msgspec error, nothing else."""
    try:
        decoder.decode(msgspec.json.encode(body))
    except (msgspec.ValidationError, msgspec.DecodeError):
        pass
