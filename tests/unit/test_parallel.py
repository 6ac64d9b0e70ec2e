"""Parallel service behaviour, on fakes of every port (`ScriptedRunner` in tests/fakes.py
picks each run's behaviour from markers in its prompt, so one request can mix outcomes)."""

from __future__ import annotations

import tempfile

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clinvk.domain.config import Config, ParallelConfig, ServerConfig
from clinvk.domain.errors import InvalidRequest, UnknownBackend, WorkdirForbidden
from clinvk.domain.models import PromptRequest
from clinvk.domain.orchestration import RunFinished, RunStarted, RunText
from clinvk.domain.parallel import ParallelRequest
from clinvk.entrypoints.bootstrap import bootstrap
from tests.fakes import FakeClock, FakeIds, FakeSessionStore, ScriptedRunner
from tests.strategies import task_plans
from tests.virtual_time import VIRTUAL_TIME

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    """Virtual time: deadlines fire only once every run that can move has moved."""
    return VIRTUAL_TIME


@pytest.fixture
def runner() -> ScriptedRunner:
    return ScriptedRunner()


def _tasks(*specs: tuple[str, str]) -> list[PromptRequest]:
    return [PromptRequest(backend=b, prompt=p) for b, p in specs]


async def test_results_come_in_input_order_with_totals(services, runner):
    """Results follow the input order whatever order tasks finish in, with matching totals."""
    tasks = _tasks(("claude", "first [slow]"), ("codex", "second"), ("gemini", "third [fail]"))
    result = await services.parallel.run(ParallelRequest(tasks=tasks))
    assert [r.index for r in result.results] == [0, 1, 2]
    assert [r.backend for r in result.results] == ["claude", "codex", "gemini"]
    assert [r.status for r in result.results] == ["completed", "completed", "failed"]
    assert result.results[0].output == "claude: first [slow]"
    assert result.results[2].error == "API Error: injected"
    assert result.results[2].exit_code == 1
    assert (result.total_tasks, result.completed, result.failed, result.cancelled) == (3, 2, 1, 0)


async def test_tasks_are_ephemeral(services, runner, store):
    """Parallel tasks keep no session, even without `ephemeral` in the request."""
    await services.parallel.run(ParallelRequest(tasks=_tasks(("claude", "a"), ("codex", "b"))))
    assert store.sessions == {}
    assert all(spec.ephemeral for spec in runner.runs)


@pytest.mark.parametrize(("max_parallel", "expected"), [(1, 1), (2, 2), (None, 3)])
async def test_never_more_than_max_parallel_at_once(services, runner, max_parallel, expected):
    """At most max_parallel CLIs run at once (default parallel.max_workers = 3)."""
    runner.rendezvous = expected  # no run finishes before `expected` of them overlapped
    tasks = _tasks(*[("claude", f"t{i} [slow]") for i in range(7)])
    result = await services.parallel.run(ParallelRequest(tasks=tasks, max_parallel=max_parallel))
    assert runner.max_live == expected
    assert result.completed == 7


async def test_fail_fast_cancels_running_and_never_starts_pending(services, runner):
    """With fail_fast the first failure cancels running tasks and pending ones never start."""
    tasks = _tasks(
        ("claude", "slowpoke [hang]"), ("codex", "bad [fail]"), ("gemini", "later"),
        ("claude", "later too"),
    )
    result = await services.parallel.run(
        ParallelRequest(tasks=tasks, max_parallel=2, fail_fast=True)
    )
    assert [r.status for r in result.results] == ["cancelled", "failed", "cancelled", "cancelled"]
    assert runner.cancelled == ["slowpoke [hang]"]
    assert [s.prompt for s in runner.runs] == ["slowpoke [hang]", "bad [fail]"]
    assert runner.live == 0
    cancelled = result.results[0]
    assert cancelled.error_code == "cancelled" and "task 1 failed" in cancelled.error
    assert cancelled.model == "claude-model"  # what the run had reported before it was stopped
    assert result.results[2].duration_ms == 0 and result.results[2].exit_code == -1
    assert (result.completed, result.failed, result.cancelled) == (0, 1, 3)


async def test_without_fail_fast_a_failure_stops_nothing(services, runner):
    """Without fail_fast every task runs to its own end, failures included."""
    tasks = _tasks(("codex", "bad [fail]"), ("claude", "ok [slow]"), ("gemini", "ok"))
    result = await services.parallel.run(ParallelRequest(tasks=tasks, max_parallel=1))
    assert [r.status for r in result.results] == ["failed", "completed", "completed"]
    assert runner.cancelled == []


async def test_fail_fast_defaults_to_the_config(runner, tmp_path):
    """fail_fast left out of the request follows parallel.fail_fast."""
    config = Config(
        server=ServerConfig(default_workdir=str(tmp_path)),
        parallel=ParallelConfig(fail_fast=True),
    )
    services = bootstrap(config, runner=runner, store=FakeSessionStore(), clock=FakeClock(),
                         ids=FakeIds())
    tasks = _tasks(("codex", "bad [fail]"), ("claude", "never"))
    result = await services.parallel.run(ParallelRequest(tasks=tasks, max_parallel=1))
    assert [r.status for r in result.results] == ["failed", "cancelled"]


async def test_unavailable_backend_is_that_tasks_failure(services, runner):
    """A known backend whose CLI is missing fails its own task; the others still answer."""
    runner.unavailable.add("gemini")
    tasks = _tasks(("gemini", "a"), ("claude", "b"))
    result = await services.parallel.run(ParallelRequest(tasks=tasks))
    first = result.results[0]
    assert (first.status, first.error_code, first.exit_code) == (
        "failed", "backend_unavailable", -1
    )
    assert result.results[1].status == "completed"


async def test_unknown_backend_refuses_the_request_before_anything_runs(services, runner):
    """One unknown backend among valid ones is an InvalidRequest naming its index; nothing ran."""
    tasks = _tasks(("claude", "a"), ("codex", "b"), ("nope", "c"))
    with pytest.raises(UnknownBackend) as info:
        await services.parallel.run(ParallelRequest(tasks=tasks))
    assert info.value.field == "tasks[2].backend"
    assert runner.runs == []


@pytest.mark.parametrize(
    ("task", "field"),
    [
        (PromptRequest(backend="claude", prompt="   "), "tasks[1].prompt"),
        (PromptRequest(backend="claude", prompt="x", workdir="relative"), "tasks[1].workdir"),
        (PromptRequest(backend="claude", prompt="x", session_id="s1"), "tasks[1].session_id"),
    ],
)
async def test_bad_task_names_its_index_and_field(services, runner, task, field):
    """A task that can never run refuses the whole request, naming `tasks[i].field`."""
    with pytest.raises(InvalidRequest) as info:
        await services.parallel.run(ParallelRequest(tasks=[_tasks(("codex", "ok"))[0], task]))
    assert info.value.field == field
    assert runner.runs == []


async def test_forbidden_workdir_names_the_task(services, runner):
    """A task whose workdir the policy blocks is refused up front, naming its workdir field."""
    tasks = [PromptRequest(backend="claude", prompt="x", workdir="/etc")]
    with pytest.raises(WorkdirForbidden) as info:
        await services.parallel.run(ParallelRequest(tasks=tasks))
    assert info.value.field == "tasks[0].workdir"


async def test_empty_and_oversized_task_lists_are_refused(services, runner):
    """No tasks, or more than parallel.max_tasks, is an InvalidRequest on `tasks`."""
    with pytest.raises(InvalidRequest) as info:
        await services.parallel.run(ParallelRequest(tasks=[]))
    assert info.value.field == "tasks"
    too_many = _tasks(*[("claude", "x")] * (services.config.parallel.max_tasks + 1))
    with pytest.raises(InvalidRequest) as info:
        await services.parallel.run(ParallelRequest(tasks=too_many))
    assert info.value.field == "tasks"
    assert runner.runs == []


async def test_deadline_ends_running_tasks_and_cancels_pending(runner, tmp_path):
    """At server.request_timeout_secs running tasks fail as timed out and pending ones are
    cancelled, and the answer still lists every task."""
    config = Config(server=ServerConfig(default_workdir=str(tmp_path), request_timeout_secs=60))
    services = bootstrap(config, runner=runner, store=FakeSessionStore(), clock=FakeClock(),
                         ids=FakeIds())
    tasks = _tasks(("claude", "quick"), ("codex", "stuck [hang]"), ("gemini", "stuck too [hang]"),
                   ("claude", "waits"))
    result = await services.parallel.run(ParallelRequest(tasks=tasks, max_parallel=2))
    assert [r.status for r in result.results] == ["completed", "failed", "failed", "cancelled"]
    assert result.results[1].error_code == "backend_timeout"
    assert result.results[3].error_code == "cancelled"
    assert sorted(runner.cancelled) == ["stuck [hang]", "stuck too [hang]"]
    assert (result.completed, result.failed, result.cancelled) == (1, 2, 1)


async def test_progress_reports_start_text_and_end_of_every_task(services, runner):
    """Progress events tag text with the task index and end with one RunFinished per task."""
    events = []

    async def sink(event):
        events.append(event)

    tasks = _tasks(("claude", "one"), ("codex", "two [fail]"))
    result = await services.parallel.run(ParallelRequest(tasks=tasks), sink)
    started = [e.index for e in events if isinstance(e, RunStarted)]
    finished = {e.outcome.index: e.outcome for e in events if isinstance(e, RunFinished)}
    text = "".join(e.text for e in events if isinstance(e, RunText) and e.index == 0)
    assert sorted(started) == [0, 1]
    assert text == "claude: one"
    assert [finished[0], finished[1]] == result.results


async def test_fail_fast_progress_reports_every_cancelled_task(services, runner):
    """Under fail_fast every task, cancelled or never started, gets its RunFinished event."""
    events = []

    async def sink(event):
        events.append(event)

    tasks = _tasks(("claude", "[hang]"), ("codex", "[fail]"), ("gemini", "pending"))
    await services.parallel.run(ParallelRequest(tasks=tasks, max_parallel=2, fail_fast=True), sink)
    finished = sorted(e.outcome.index for e in events if isinstance(e, RunFinished))
    assert finished == [0, 1, 2]


@settings(max_examples=40, deadline=None)
@given(plan=task_plans, fail_fast=st.booleans(), max_parallel=st.integers(1, 4))
def test_any_outcomes_give_consistent_totals(plan, fail_fast, max_parallel):
    """Whatever the mix of task outcomes, totals add up and match the per-task statuses."""
    runner = ScriptedRunner(unavailable={"gemini"})
    config = Config(server=ServerConfig(default_workdir=tempfile.gettempdir()))
    services = bootstrap(config, runner=runner, store=FakeSessionStore(), clock=FakeClock(),
                         ids=FakeIds())
    tasks = [PromptRequest(backend=backend, prompt=f"t{i} {marker}")
             for i, (backend, marker) in enumerate(plan)]
    request = ParallelRequest(tasks=tasks, max_parallel=max_parallel, fail_fast=fail_fast)
    result = anyio.run(services.parallel.run, request)

    statuses = [r.status for r in result.results]
    assert [r.index for r in result.results] == list(range(len(plan)))
    assert result.total_tasks == len(plan)
    assert result.completed == statuses.count("completed")
    assert result.failed == statuses.count("failed")
    assert result.cancelled == statuses.count("cancelled")
    assert result.completed + result.failed + result.cancelled == result.total_tasks
    assert runner.max_live <= max_parallel and runner.live == 0
    doomed = [b == "gemini" or m == "[fail]" for b, m in plan]
    if not fail_fast:
        assert result.cancelled == 0
        assert result.failed == sum(doomed)
    else:
        assert (result.cancelled > 0) <= (result.failed > 0)
        if not any(doomed):
            assert result.completed == len(plan)


async def test_refused_extra_flag_names_the_task(services, runner, monkeypatch):
    """An `extra` flag the backend's argv builder refuses is a 400 on `tasks[i].extra`."""

    def command(spec):
        if "--bad" in spec.extra:
            raise InvalidRequest("extra flag '--bad' is not allowed", field="extra")
        return (spec.backend,)

    monkeypatch.setattr(runner, "command", command)
    tasks = [PromptRequest(backend="claude", prompt="x"),
             PromptRequest(backend="codex", prompt="y", extra=["--bad"])]
    with pytest.raises(InvalidRequest) as info:
        await services.parallel.run(ParallelRequest(tasks=tasks))
    assert info.value.field == "tasks[1].extra"
    assert runner.runs == []


async def test_max_parallel_is_capped_by_the_servers_cli_limit(runner, tmp_path):
    """max_parallel above server.max_concurrent_runs is lowered to it, so no task is refused
    as overloaded by admission control."""
    config = Config(server=ServerConfig(default_workdir=str(tmp_path), max_concurrent_runs=2,
                                        queue_max_length=0))
    services = bootstrap(config, runner=runner, store=FakeSessionStore(), clock=FakeClock(),
                         ids=FakeIds())
    runner.rendezvous = 2  # no run finishes before two of them overlapped
    tasks = _tasks(*[("claude", f"t{i} [slow]") for i in range(5)])
    result = await services.parallel.run(ParallelRequest(tasks=tasks, max_parallel=5))
    assert result.completed == 5, [r.error for r in result.results]
    assert runner.max_live == 2
