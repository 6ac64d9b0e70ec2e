"""Compare service behaviour, on fakes of every port."""

from __future__ import annotations

import pytest

from clinvk.domain.compare import CompareRequest
from clinvk.domain.config import Config, ServerConfig
from clinvk.domain.errors import InvalidRequest, UnknownBackend
from clinvk.domain.orchestration import RunFinished
from clinvk.entrypoints.bootstrap import bootstrap
from tests.fakes import FakeClock, FakeIds, FakeSessionStore, ScriptedRunner
from tests.virtual_time import VIRTUAL_TIME

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    """Virtual time: deadlines fire only once every run that can move has moved."""
    return VIRTUAL_TIME


@pytest.fixture
def runner() -> ScriptedRunner:
    return ScriptedRunner()


async def test_every_backend_answers_with_its_model(services, runner, store):
    """Each backend's result carries its own output and the model its CLI reported."""
    result = await services.compare.run(
        CompareRequest(prompt="hi", backends=["gemini", "claude", "codex"])
    )
    assert [r.backend for r in result.results] == ["gemini", "claude", "codex"]
    assert [r.model for r in result.results] == ["gemini-model", "claude-model", "codex-model"]
    assert [r.output for r in result.results] == ["gemini: hi", "claude: hi", "codex: hi"]
    assert (result.prompt, result.backends) == ("hi", ["gemini", "claude", "codex"])
    assert (result.completed, result.failed, result.cancelled) == (3, 0, 0)
    assert store.sessions == {}


async def test_backends_run_at_once_unless_sequential(services, runner):
    """By default all backends run concurrently; `sequential` runs one at a time."""
    runner.rendezvous = 3  # no run finishes before all three overlapped
    request = CompareRequest(prompt="hi [slow]", backends=["claude", "codex", "gemini"])
    await services.compare.run(request)
    assert runner.max_live == 3
    runner.rendezvous = runner.max_live = 0
    sequential = CompareRequest(prompt="hi [slow]", backends=["claude", "codex"], sequential=True)
    await services.compare.run(sequential)
    assert runner.max_live == 1
    assert [spec.backend for spec in runner.runs[3:]] == ["claude", "codex"]


@pytest.mark.parametrize("sequential", [False, True])
async def test_missing_cli_is_only_that_backends_error(services, runner, sequential):
    """A backend whose CLI is not installed gets an error result; the others still answer."""
    runner.unavailable.add("codex")
    result = await services.compare.run(
        CompareRequest(prompt="hi", backends=["claude", "codex", "gemini"], sequential=sequential)
    )
    assert [r.status for r in result.results] == ["completed", "failed", "completed"]
    assert result.results[1].error_code == "backend_unavailable"
    assert result.results[1].exit_code == -1
    assert (result.completed, result.failed) == (2, 1)


async def test_failing_backend_does_not_cancel_the_others(services, runner):
    """One backend failing mid-run leaves the others running to their own end."""
    runner.failing.add("codex")
    result = await services.compare.run(
        CompareRequest(prompt="hi [slow]", backends=["claude", "codex", "gemini"])
    )
    assert [r.status for r in result.results] == ["completed", "failed", "completed"]
    assert result.results[1].error == "API Error: injected"
    assert runner.cancelled == []


@pytest.mark.parametrize(
    ("backends", "field"),
    [(["claude", "nope"], "backends[1]"), (["claude", "claude"], "backends[1]"), ([], "backends")],
)
async def test_bad_backend_lists_are_refused(services, runner, backends, field):
    """Unknown or repeated backends, or none, refuse the compare before anything runs."""
    with pytest.raises(InvalidRequest) as info:
        await services.compare.run(CompareRequest(prompt="hi", backends=backends))
    assert info.value.field == field
    if backends and backends[1] == "nope":
        assert isinstance(info.value, UnknownBackend)
    assert runner.runs == []


async def test_blank_prompt_is_refused(services, runner):
    """A blank prompt refuses the compare, naming `prompt`."""
    with pytest.raises(InvalidRequest) as info:
        await services.compare.run(CompareRequest(prompt=" ", backends=["claude"]))
    assert info.value.field == "prompt"


async def test_deadline_ends_what_is_still_running(runner, tmp_path):
    """At server.request_timeout_secs a hung backend is ended as timed out; finished ones
    keep their answers."""
    config = Config(server=ServerConfig(default_workdir=str(tmp_path), request_timeout_secs=60))
    services = bootstrap(config, runner=runner, store=FakeSessionStore(), clock=FakeClock(),
                         ids=FakeIds())
    runner.hanging.add("gemini")
    result = await services.compare.run(CompareRequest(prompt="hi", backends=["claude", "gemini"]))
    assert [r.status for r in result.results] == ["completed", "failed"]
    assert result.results[1].error_code == "backend_timeout"
    assert result.results[1].model == "gemini-model"
    assert runner.cancelled == ["hi"]


async def test_progress_ends_with_one_result_per_backend(services, runner):
    """Progress reports one RunFinished per backend, indexed by its place in the request."""
    events = []

    async def sink(event):
        events.append(event)

    await services.compare.run(CompareRequest(prompt="hi", backends=["codex", "claude"]), sink)
    finished = {e.outcome.index: e.outcome.backend for e in events if isinstance(e, RunFinished)}
    assert finished == {0: "codex", 1: "claude"}
