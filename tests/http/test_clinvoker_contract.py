"""Requests written for clinvoker (the original Go server) work unchanged on /api/v1.

The tables below are the original's request types (its `handlers/models.go`): every field
with its Go type. Hypothesis builds bodies the way Go clients send them: each optional
field left out, sent with its Go zero value (a struct without `omitempty` marshals `""`,
`0`, `false` and `null` slices), or sent with a real value. Every such body is accepted,
means what it means to the original, and is answered with the original's response fields.
"""

from __future__ import annotations

import string
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

OMIT = object()

_text = st.text(alphabet=string.ascii_letters + string.digits + " .,?!-", min_size=1,
                max_size=40).filter(lambda s: s.strip())
_backend = st.sampled_from(["claude", "codex", "gemini"])
_model = st.sampled_from(["sonnet", "gpt-5-codex", "gemini-2.5-flash"])
_approval = st.sampled_from(["default", "auto", "none", "always"])
_sandbox = st.sampled_from(["default", "read-only", "workspace", "full"])
_format = st.sampled_from(["default", "text", "json"])
_count = st.integers(min_value=1, max_value=50)
_metadata = st.dictionaries(st.sampled_from(["team", "ticket", "user"]), _text, max_size=3)
# The fake runner takes any flag; the real allow-lists are tested with the real CLIs.
_extra = st.lists(st.sampled_from(["--foo", "--bar=1"]), max_size=2)

#: Go type -> its zero value as encoding/json writes it.
GO_ZERO = {"string": "", "int": 0, "bool": False, "[]string": None, "map": None}


def _go(go_type: str, value: st.SearchStrategy) -> st.SearchStrategy:
    """An optional Go field: left out, its zero value, or a real value."""
    return st.one_of(st.just(OMIT), st.just(GO_ZERO[go_type]), value)


def _object(fields: dict[str, st.SearchStrategy]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(fields).map(
        lambda d: {k: v for k, v in d.items() if v is not OMIT}
    )


# handlers.PromptRequest
PROMPT = {
    "backend": _backend,
    "prompt": _text,
    "model": _go("string", _model),
    "workdir": _go("string", st.just("<tmp>")),
    "approval_mode": _go("string", _approval),
    "sandbox_mode": _go("string", _sandbox),
    "output_format": _go("string", _format),
    "max_tokens": _go("int", _count),
    "max_turns": _go("int", _count),
    "system_prompt": _go("string", _text),
    "verbose": _go("bool", st.booleans()),
    "dry_run": _go("bool", st.booleans()),
    "ephemeral": _go("bool", st.booleans()),
    "extra": _go("[]string", _extra),
    "metadata": _go("map", _metadata),
}
# handlers.ParallelTask (PromptRequest without dry_run)
TASK = {k: v for k, v in PROMPT.items() if k != "dry_run"}
# handlers.ParallelRequest
PARALLEL = {
    "tasks": st.lists(_object(TASK), min_size=1, max_size=3),
    "max_parallel": _go("int", st.integers(min_value=1, max_value=4)),
    "fail_fast": _go("bool", st.booleans()),
    "dry_run": _go("bool", st.booleans()),
}
# handlers.ChainStep
STEP = {
    "backend": _backend,
    "prompt": _text,
    "model": _go("string", _model),
    "workdir": _go("string", st.just("<tmp>")),
    "approval_mode": _go("string", _approval),
    "sandbox_mode": _go("string", _sandbox),
    "max_tokens": _go("int", _count),
    "max_turns": _go("int", _count),
    "system_prompt": _go("string", _text),
    "verbose": _go("bool", st.booleans()),
    "extra": _go("[]string", _extra),
    "name": _go("string", st.sampled_from(["plan", "write", "review"])),
}
# handlers.ChainRequest
CHAIN = {
    "steps": st.lists(_object(STEP), min_size=1, max_size=3, unique_by=lambda s: s.get("name")
                      or object()),
    "stop_on_failure": _go("bool", st.booleans()),
    "pass_session_id": _go("bool", st.booleans()),
    "pass_working_dir": _go("bool", st.booleans()),
    "persist_sessions": _go("bool", st.booleans()),
    "dry_run": _go("bool", st.booleans()),
}
# handlers.CompareRequest
COMPARE = {
    "backends": st.lists(_backend, min_size=1, max_size=3, unique=True),
    "prompt": _text,
    "model": _go("string", _model),
    "workdir": _go("string", st.just("<tmp>")),
    "sequential": _go("bool", st.booleans()),
    "dry_run": _go("bool", st.booleans()),
}

_SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _fill(body: Any, workdir: str) -> Any:
    if isinstance(body, dict):
        return {k: _fill(v, workdir) for k, v in body.items()}
    if isinstance(body, list):
        return [_fill(v, workdir) for v in body]
    return workdir if body == "<tmp>" else body


def _set(value: Any) -> bool:
    """Whether a Go client meant this value (not its type's zero value)."""
    return value not in ("", 0, None, False)


# Response types of the original: field -> JSON type; `?` marks omitempty fields.
PROMPT_RESPONSE = {"session_id?": str, "backend": str, "exit_code": int, "duration_ms": int,
                   "output?": str, "error?": str, "token_usage?": dict}
CHAIN_STEP_RESPONSE = {"step": int, "name?": str, "backend": str, "exit_code": int,
                       "error?": str, "session_id?": str, "duration_ms": int, "output?": str}
COMPARE_RESPONSE = {"backend": str, "model?": str, "exit_code": int, "error?": str,
                    "duration_ms": int, "session_id?": str, "output?": str}
USAGE = {"input_tokens": int, "output_tokens": int}


def assert_shape(answer: dict, shape: dict[str, type]) -> None:
    """Every field of the original's type is there (unless omitempty) with its JSON type."""
    for key, kind in shape.items():
        name = key.rstrip("?")
        if key.endswith("?") and name not in answer:
            continue
        assert name in answer, f"{name} missing from {answer}"
        value = answer[name]
        # JSON true/false decode to bool, a subclass of int: never count one as the other.
        ok = isinstance(value, bool) if kind is bool else (
            isinstance(value, kind) and not isinstance(value, bool)
        )
        assert ok, f"{name}={value!r} is not {kind.__name__}"
    if "token_usage" in answer:
        assert_shape(answer["token_usage"], USAGE)


@_SETTINGS
@given(body=_object(PROMPT))
def test_prompt_accepts_every_clinvoker_field(client, runner, store, tmp_path, body):
    """Any body of clinvoker's PromptRequest is answered 200 with its response fields, each
    field meaning what it means there (zero values = not set)."""
    body = _fill(body, str(tmp_path))
    before = len(runner.runs)
    r = client.post("/api/v1/prompt", json=body)
    assert r.status_code == 200, r.text
    answer = r.json()
    assert_shape(answer, PROMPT_RESPONSE)
    assert answer["backend"] == body["backend"] and answer["exit_code"] == 0
    if body.get("dry_run"):
        assert len(runner.runs) == before
        assert answer["output"].startswith(f"Would execute: {body['backend']} [")
        return
    spec = runner.runs[-1]
    assert spec.prompt == body["prompt"]
    assert spec.model == (body.get("model") or None)
    assert spec.max_turns == (body.get("max_turns") or None)
    assert spec.max_tokens == (body.get("max_tokens") or None)
    assert spec.system_prompt == (body.get("system_prompt") or None)
    assert spec.approval_mode == (body.get("approval_mode") or "default")
    assert spec.sandbox_mode == (body.get("sandbox_mode") or "default")
    assert spec.extra == tuple(body.get("extra") or ())
    assert spec.workdir == str(tmp_path)
    if body.get("ephemeral"):
        assert "session_id" not in answer
    else:
        session = store.sessions[answer["session_id"]]
        assert session.metadata == (body.get("metadata") or {})


@_SETTINGS
@given(body=_object(PARALLEL))
def test_parallel_accepts_every_clinvoker_field(client, runner, tmp_path, body):
    """Any body of clinvoker's ParallelRequest is answered with its totals and one
    PromptResponse-shaped result per task; a top-level dry_run covers every task."""
    body = _fill(body, str(tmp_path))
    before = len(runner.runs)
    r = client.post("/api/v1/parallel", json=body)
    assert r.status_code == 200, r.text
    answer = r.json()
    assert_shape(answer, {"total_tasks": int, "completed": int, "failed": int,
                          "total_duration_ms": int, "results": list})
    assert answer["total_tasks"] == len(body["tasks"]) == len(answer["results"])
    assert answer["completed"] == len(body["tasks"])
    for task, result in zip(body["tasks"], answer["results"], strict=True):
        assert_shape(result, PROMPT_RESPONSE)
        assert result["backend"] == task["backend"]
    if body.get("dry_run"):
        assert len(runner.runs) == before
        assert all(x["output"].startswith("Would execute: ") for x in answer["results"])
    else:
        assert len(runner.runs) == before + len(body["tasks"])


@_SETTINGS
@given(body=_object(CHAIN))
def test_chain_accepts_every_clinvoker_field(client, runner, tmp_path, body):
    """Any body of clinvoker's ChainRequest (pass_session_id and persist_sessions included)
    is answered with its totals and ChainStepResult-shaped results."""
    body = _fill(body, str(tmp_path))
    before = len(runner.runs)
    r = client.post("/api/v1/chain", json=body)
    assert r.status_code == 200, r.text
    answer = r.json()
    assert_shape(answer, {"total_steps": int, "completed_steps": int, "total_duration_ms": int,
                          "results": list})
    assert answer["total_steps"] == answer["completed_steps"] == len(body["steps"])
    for i, (step, result) in enumerate(zip(body["steps"], answer["results"], strict=True)):
        assert_shape(result, CHAIN_STEP_RESPONSE)
        assert (result["step"], result["backend"]) == (i + 1, step["backend"])
        assert result.get("name") == (step.get("name") or None)
    if body.get("dry_run"):
        assert len(runner.runs) == before
        return
    for step, spec in zip(body["steps"], runner.runs[before:], strict=True):
        assert spec.model == (step.get("model") or None)
        assert spec.max_tokens == (step.get("max_tokens") or None)
        assert spec.system_prompt == (step.get("system_prompt") or None)
        assert spec.extra == tuple(step.get("extra") or ())


@_SETTINGS
@given(body=_object(COMPARE))
def test_compare_accepts_every_clinvoker_field(client, runner, tmp_path, body):
    """Any body of clinvoker's CompareRequest is answered with prompt, backends and one
    CompareBackendResult-shaped result per backend; `model` reaches every backend."""
    body = _fill(body, str(tmp_path))
    before = len(runner.runs)
    r = client.post("/api/v1/compare", json=body)
    assert r.status_code == 200, r.text
    answer = r.json()
    assert (answer["prompt"], answer["backends"]) == (body["prompt"], body["backends"])
    assert isinstance(answer["total_duration_ms"], int)
    for name, result in zip(body["backends"], answer["results"], strict=True):
        assert_shape(result, COMPARE_RESPONSE)
        assert result["backend"] == name
    if body.get("dry_run"):
        assert len(runner.runs) == before
        return
    assert {s.model for s in runner.runs[before:]} == {body.get("model") or None}


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/api/v1/prompt", {"backend": "claude", "prompt": "x", "temperature": 1}, "temperature"),
        ("/api/v1/parallel", {"tasks": [{"backend": "claude", "prompt": "x"}], "sequential": True},
         "sequential"),
        ("/api/v1/parallel", {"tasks": [{"backend": "claude", "prompt": "x", "name": "a"}]},
         "tasks[0].name"),
        ("/api/v1/chain", {"steps": [{"backend": "claude", "prompt": "x", "ephemeral": True}]},
         "steps[0].ephemeral"),
        ("/api/v1/compare", {"backends": ["claude"], "prompt": "x", "tasks": []}, "tasks"),
    ],
)
def test_a_field_neither_server_knows_is_a_400_naming_it(client, runner, path, body, field):
    """A field that is in neither clinvoker's nor clinvk's request type stays a 400 naming it."""
    r = client.post(path, json=body)
    assert r.status_code == 400, r.text
    assert r.json()["field"] == field
    assert runner.runs == []


def test_go_zero_values_do_not_hide_a_wrong_value(client, runner):
    """Only zero values mean "not set": a negative count or an unknown mode is still a 400."""
    for body, field in [
        ({"backend": "claude", "prompt": "x", "max_turns": -1}, "max_turns"),
        ({"backend": "claude", "prompt": "x", "approval_mode": "sometimes"}, "approval_mode"),
        ({"backend": "", "prompt": "x"}, "backend"),
        ({"backend": "claude", "prompt": ""}, "prompt"),
    ]:
        r = client.post("/api/v1/prompt", json=body)
        assert r.status_code == 400 and r.json()["field"] == field, r.text
    assert runner.runs == []


def test_output_format_text_answers_json_unless_text_is_asked_for(client):
    """output_format text answers clinvoker's JSON body; `Accept: text/plain` gets bare text."""
    body = {"backend": "claude", "prompt": "hi", "output_format": "text"}
    r = client.post("/api/v1/prompt", json=body)
    assert r.headers["content-type"].startswith("application/json")
    assert r.json()["output"] == "hello from fake"
    r = client.post("/api/v1/prompt", json=body, headers={"accept": "text/plain"})
    assert r.headers["content-type"].startswith("text/plain")
    assert r.text == "hello from fake"


def test_session_get_and_delete_take_a_unique_id_prefix(client, store):
    """GET/DELETE /sessions/{id} accept a unique prefix of the id, as clinvoker does; delete
    answers {"deleted": true, "id": <full id>}; an ambiguous prefix is a 400."""
    first = client.post("/api/v1/prompt", json={"backend": "claude", "prompt": "a"}).json()
    assert first["session_id"] == "s1"
    for n in range(2, 12):
        client.post("/api/v1/prompt", json={"backend": "claude", "prompt": f"p{n}"})
    assert client.get("/api/v1/sessions/s1").json()["id"] == "s1"  # exact id wins over prefix
    assert client.get("/api/v1/sessions/s11").json()["id"] == "s11"
    r = client.get("/api/v1/sessions/s")
    assert r.status_code == 400 and r.json()["field"] == "id"
    assert client.delete("/api/v1/sessions/s1").json() == {"deleted": True, "id": "s1"}
    assert client.delete("/api/v1/sessions/s10").json() == {"deleted": True, "id": "s10"}
    assert client.get("/api/v1/sessions/s1").json()["id"] == "s11"  # now a unique prefix
    assert client.get("/api/v1/sessions/zz").status_code == 404
    store.sessions["abc123"] = msgspec.structs.replace(store.sessions.pop("s11"), id="abc123")
    r = client.delete("/api/v1/sessions/abc")
    assert r.status_code == 200 and r.json() == {"deleted": True, "id": "abc123"}
    assert client.get("/api/v1/sessions/abc").status_code == 404


def test_session_list_limit_zero_means_all(client):
    """GET /sessions?limit=0 (clinvoker's "no limit") and no limit both list every session."""
    for n in range(60):
        client.post("/api/v1/prompt", json={"backend": "codex", "prompt": f"p{n}"})
    for query in ("", "?limit=0"):
        page = client.get(f"/api/v1/sessions{query}").json()
        assert (page["total"], len(page["sessions"]), page["offset"]) == (60, 60, 0)
    page = client.get("/api/v1/sessions?limit=5&offset=58").json()
    assert (page["total"], len(page["sessions"]), page["limit"]) == (60, 2, 5)
