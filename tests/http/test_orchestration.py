"""POST /api/v1/parallel, /chain and /compare through the native HTTP dialect, on fakes."""

from __future__ import annotations

import json

import anyio
import pytest

from clinvk.adapters.http.app import create_app
from tests.fakes import ScriptedRunner

TASK_FIELDS = {"index", "backend", "status", "exit_code", "duration_ms", "output", "token_usage",
               "model", "error", "error_code"}


@pytest.fixture
def runner() -> ScriptedRunner:
    return ScriptedRunner()


def _ndjson(client, path: str, body: dict, **kw) -> list[dict]:
    with client.stream("POST", path, json=body, **kw) as r:
        assert r.status_code == 200, r.read()
        assert r.headers["content-type"].startswith("application/x-ndjson")
        return [json.loads(line) for line in r.iter_lines() if line]


def _without_timing(answer: dict) -> dict:
    return {k: v for k, v in answer.items() if k != "total_duration_ms"}


# -- parallel ---------------------------------------------------------------------------


def test_parallel_answers_with_the_contract_fields(client, store):
    """POST /api/v1/parallel answers totals and one result per task, in input order."""
    r = client.post("/api/v1/parallel", json={"tasks": [
        {"backend": "claude", "prompt": "task 1"},
        {"backend": "codex", "prompt": "task 2 [fail]"},
    ]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert {"total_tasks", "completed", "failed", "cancelled", "total_duration_ms",
            "results"} <= set(body)
    assert (body["total_tasks"], body["completed"], body["failed"]) == (2, 1, 1)
    first, second = body["results"]
    # As in clinvoker, `error` is there only when the task failed.
    assert set(first) == TASK_FIELDS - {"error", "error_code"}
    assert set(second) == TASK_FIELDS
    assert (first["index"], first["backend"], first["output"]) == (0, "claude", "claude: task 1")
    assert first["token_usage"]["input_tokens"] == 3
    assert (second["status"], second["exit_code"], second["error"]) == (
        "failed", 1, "API Error: injected"
    )
    assert store.sessions == {}


def test_parallel_fail_fast_says_which_tasks_were_cancelled(client, runner):
    """With fail_fast the answer marks the running and pending tasks as cancelled."""
    r = client.post("/api/v1/parallel", json={"fail_fast": True, "max_parallel": 2, "tasks": [
        {"backend": "claude", "prompt": "[hang]"},
        {"backend": "codex", "prompt": "[fail]"},
        {"backend": "gemini", "prompt": "pending"},
    ]})
    body = r.json()
    assert [t["status"] for t in body["results"]] == ["cancelled", "failed", "cancelled"]
    assert body["cancelled"] == 2
    assert runner.cancelled == ["[hang]"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"tasks": []}, "tasks"),
        ({}, "tasks"),
        ({"tasks": [{"backend": "claude", "prompt": "x"}], "bogus": 1}, "bogus"),
        ({"tasks": [{"backend": "claude", "prompt": "x"}], "max_parallel": -1}, "max_parallel"),
        ({"tasks": [{"backend": "claude", "prompt": "x"}, {"prompt": "x"}]}, "tasks[1].backend"),
        ({"tasks": [{"backend": "claude", "prompt": "x"}, {"backend": "claude"}]},
         "tasks[1].prompt"),
        ({"tasks": [{"backend": "claude", "prompt": "x", "zz": 1}]}, "tasks[0].zz"),
        ({"tasks": [{"backend": "claude", "prompt": "x", "max_turns": -2}]},
         "tasks[0].max_turns"),
        ({"tasks": [{"backend": "claude", "prompt": "x"}, {"backend": "codex", "prompt": "y"},
                    {"backend": "nope", "prompt": "z"}]}, "tasks[2].backend"),
        ({"tasks": [{"backend": "claude", "prompt": "x"}, {"backend": "codex", "prompt": " "}]},
         "tasks[1].prompt"),
    ],
)
def test_parallel_bad_input_is_400_naming_the_task_and_field(client, runner, body, field):
    """Bad parallel input gives 400 problem+json naming the task index and field; nothing ran."""
    r = client.post("/api/v1/parallel", json=body)
    assert r.status_code == 400, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["field"] == field
    assert runner.runs == []


def test_parallel_over_the_task_limit_is_400(client, services):
    """More tasks than parallel.max_tasks is a 400 on `tasks` that states the limit."""
    limit = services.config.parallel.max_tasks
    r = client.post("/api/v1/parallel", json={
        "tasks": [{"backend": "claude", "prompt": "x"}] * (limit + 1)
    })
    assert r.status_code == 400
    assert r.json()["field"] == "tasks" and str(limit) in r.json()["detail"]


def test_parallel_forbidden_workdir_is_403_naming_the_task(client):
    """A task whose workdir is blocked gives 403 naming that task's workdir."""
    r = client.post("/api/v1/parallel", json={"tasks": [
        {"backend": "claude", "prompt": "x"},
        {"backend": "claude", "prompt": "x", "workdir": "/etc"},
    ]})
    assert r.status_code == 403
    assert r.json()["field"] == "tasks[1].workdir"


def test_parallel_stream_reports_progress_and_ends_with_the_answer(client):
    """`stream: true` gives NDJSON: task start, deltas tagged with the index, task results,
    then a summary equal to the non-streamed answer."""
    tasks = [{"backend": "claude", "prompt": "one"}, {"backend": "codex", "prompt": "two [fail]"}]
    lines = _ndjson(client, "/api/v1/parallel", {"tasks": tasks, "stream": True})
    kinds = {line["type"] for line in lines}
    assert {"task_started", "delta", "task_finished", "summary"} <= kinds
    assert lines[-1]["type"] == "summary"
    text0 = "".join(line["text"] for line in lines if line["type"] == "delta"
                    and line["index"] == 0)
    assert text0 == "claude: one"
    finished = {line["index"]: line["result"] for line in lines if line["type"] == "task_finished"}
    assert finished[1]["status"] == "failed"
    plain = client.post("/api/v1/parallel", json={"tasks": tasks}).json()
    assert _without_timing(lines[-1]["result"]) == _without_timing(plain)
    assert [finished[0], finished[1]] == plain["results"]


def test_accept_ndjson_streams_unless_the_body_says_otherwise(client):
    """`Accept: application/x-ndjson` asks for progress; `stream: false` still wins."""
    tasks = [{"backend": "claude", "prompt": "one"}]
    lines = _ndjson(client, "/api/v1/parallel", {"tasks": tasks},
                    headers={"accept": "application/x-ndjson"})
    assert lines[-1]["type"] == "summary"
    r = client.post("/api/v1/parallel", json={"tasks": tasks, "stream": False},
                    headers={"accept": "application/x-ndjson"})
    assert r.headers["content-type"].startswith("application/json")


def test_bad_streamed_request_is_an_ordinary_400(client):
    """A bad request that asked for a stream still gets a plain problem+json 400."""
    r = client.post("/api/v1/parallel", json={"stream": True, "tasks": [
        {"backend": "nope", "prompt": "x"}
    ]})
    assert r.status_code == 400
    assert r.json()["field"] == "tasks[0].backend"


# -- chain ------------------------------------------------------------------------------


def test_chain_answers_with_the_contract_fields(client, runner):
    """POST /api/v1/chain runs the steps in order, feeding `{{previous}}` forward."""
    r = client.post("/api/v1/chain", json={"steps": [
        {"name": "write", "backend": "claude", "prompt": "write"},
        {"name": "review", "backend": "codex", "prompt": "review {{previous}}"},
    ]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["total_steps"], body["completed_steps"], body["failed_step"]) == (2, 2, 0)
    assert "total_duration_ms" in body
    step = body["results"][1]
    assert {"step", "name", "backend", "exit_code", "duration_ms", "output"} <= set(step)
    assert "error" not in step
    assert (step["step"], step["name"], step["output"]) == (
        2, "review", "codex: review claude: write"
    )
    assert runner.runs[1].prompt == "review claude: write"


def test_chain_goes_on_after_a_failure_by_default(client, runner):
    """Over HTTP stop_on_failure defaults to false: later steps still run after a failure."""
    r = client.post("/api/v1/chain", json={"steps": [
        {"backend": "claude", "prompt": "[fail]"}, {"backend": "codex", "prompt": "next"},
    ]})
    body = r.json()
    assert (body["failed_step"], body["completed_steps"]) == (1, 1)
    assert [s["status"] for s in body["results"]] == ["failed", "completed"]


@pytest.mark.parametrize(
    ("steps", "field"),
    [
        ([{"backend": "claude", "prompt": "{{previous}}"}], "steps[0].prompt"),
        ([{"backend": "claude", "prompt": "a"}, {"backend": "nope", "prompt": "b"}],
         "steps[1].backend"),
        ([{"backend": "claude", "prompt": "a", "name": "bad name"}], "steps[0].name"),
        ([{"backend": "claude", "prompt": "a", "bogus": ["--x"]}], "steps[0].bogus"),
        ([{"backend": "claude", "prompt": "a {{session}}"}], "steps[0].prompt"),
        ([{"backend": "claude"}], "steps[0].prompt"),
        ([], "steps"),
    ],
)
def test_chain_bad_input_is_400_naming_the_step_and_field(client, runner, steps, field):
    """Bad chain input gives 400 naming `steps[i].field`; no step ran."""
    r = client.post("/api/v1/chain", json={"steps": steps})
    assert r.status_code == 400, r.text
    assert r.json()["field"] == field
    assert runner.runs == []


def test_chain_stream_tags_progress_with_the_step(client):
    """A streamed chain reports each step's start, text and result by step number, then the
    summary."""
    lines = _ndjson(client, "/api/v1/chain", {"stream": True, "steps": [
        {"name": "a", "backend": "claude", "prompt": "x"},
        {"backend": "gemini", "prompt": "y {{steps.a}}"},
    ]})
    starts = [(line["step"], line.get("name")) for line in lines if line["type"] == "step_started"]
    assert starts == [(1, "a"), (2, None)]
    text2 = "".join(line["text"] for line in lines if line["type"] == "delta" and line["step"] == 2)
    assert text2 == "gemini: y claude: x"
    assert lines[-1]["type"] == "summary" and lines[-1]["result"]["completed_steps"] == 2


# -- compare ----------------------------------------------------------------------------


def test_compare_answers_per_backend_with_the_model(client, runner):
    """POST /api/v1/compare answers one result per backend with the model that answered."""
    runner.unavailable.add("gemini")
    r = client.post("/api/v1/compare", json={
        "prompt": "hi", "backends": ["claude", "codex", "gemini"]
    })
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["prompt"], body["backends"]) == ("hi", ["claude", "codex", "gemini"])
    assert "total_duration_ms" in body
    claude, codex, gemini = body["results"]
    assert {"backend", "model", "exit_code", "duration_ms", "output"} <= set(claude)
    assert "error" not in claude
    assert (claude["model"], codex["output"]) == ("claude-model", "codex: hi")
    assert (gemini["status"], gemini["error_code"]) == ("failed", "backend_unavailable")
    assert gemini["error"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"prompt": "hi", "backends": ["claude", "nope"]}, "backends[1]"),
        ({"prompt": "hi", "backends": []}, "backends"),
        ({"prompt": "hi", "backends": ["claude", "claude"]}, "backends[1]"),
        ({"backends": ["claude"]}, "prompt"),
        ({"prompt": "hi", "backends": ["claude"], "modle": "x"}, "modle"),
    ],
)
def test_compare_bad_input_is_400_naming_the_field(client, runner, body, field):
    """Bad compare input gives 400 naming the field; nothing ran."""
    r = client.post("/api/v1/compare", json=body)
    assert r.status_code == 400, r.text
    assert r.json()["field"] == field
    assert runner.runs == []


def test_compare_stream_tags_progress_with_the_backend(client):
    """A streamed compare reports each backend's start, text and result, then the summary."""
    lines = _ndjson(client, "/api/v1/compare", {"prompt": "hi", "backends": ["codex", "claude"],
                                                "stream": True})
    finished = {line["backend"]: line["result"] for line in lines
                if line["type"] == "backend_finished"}
    assert finished["codex"]["output"] == "codex: hi"
    assert {line["backend"] for line in lines if line["type"] == "delta"} == {"codex", "claude"}
    assert lines[-1]["type"] == "summary" and lines[-1]["result"]["completed"] == 2


# -- disconnects ------------------------------------------------------------------------


async def _call_and_drop(app, path: str, body: dict, when) -> list[dict]:
    """Drive the ASGI app directly: send `body`, then report a disconnect once `when()`."""
    payload = json.dumps(body).encode()
    sent = False
    messages: list[dict] = []

    async def receive():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": payload, "more_body": False}
        while not when():
            await anyio.sleep(0.005)
        return {"type": "http.disconnect"}

    async def send(message):
        messages.append(message)

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": path, "raw_path": path.encode(), "root_path": "",
        "query_string": b"", "headers": [(b"content-type", b"application/json")],
        "client": ("127.0.0.1", 50000), "server": ("testserver", 80),
    }
    with anyio.fail_after(30):  # a hang guard only
        await app(scope, receive, send)
    return messages


@pytest.mark.anyio
@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(
    ("path", "body", "running"),
    [
        ("/api/v1/parallel", {"tasks": [{"backend": "claude", "prompt": "a [hang]"},
                                        {"backend": "codex", "prompt": "b [hang]"}]}, 2),
        ("/api/v1/chain", {"steps": [{"backend": "claude", "prompt": "a [hang]"},
                                     {"backend": "codex", "prompt": "b"}]}, 1),
        ("/api/v1/compare", {"prompt": "a [hang]", "backends": ["claude", "gemini"]}, 2),
    ],
)
async def test_client_disconnect_cancels_every_running_cli(
    services, runner, path, body, running, stream
):
    """A client that goes away cancels every run still going (so their CLIs are terminated)
    and nothing further starts."""
    await _call_and_drop(create_app(services), path, {**body, "stream": stream},
                         when=lambda: runner.live == running)  # leave once every run is going
    assert runner.live == 0
    assert len(runner.cancelled) == len(runner.runs) == running
    assert all("[hang]" in prompt for prompt in runner.cancelled)
