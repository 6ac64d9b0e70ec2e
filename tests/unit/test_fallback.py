"""Fallback: a retryable failure before any text moves the request to the next backend."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clinvk.domain import events as ev
from clinvk.domain.config import BackendConfig, Config, ServerConfig
from clinvk.domain.errors import (
    BackendFailed,
    BackendLimited,
    BackendOverloaded,
    BackendTimeout,
    InvalidRequest,
)
from clinvk.domain.fallback import Target, plan, retryable, should_fall_back
from clinvk.domain.models import PromptRequest, RunResult
from clinvk.entrypoints.bootstrap import bootstrap
from tests.fakes import FakeBackendRunner, FakeClock, FakeIds, FakeSessionStore

KNOWN = ["claude", "codex", "gemini"]

#: What one run does: answer, or fail in one of these ways (before or after some text).
OUTCOMES = ["ok", "limited", "overloaded", "http500", "http400", "timeout", "plain",
            "limited_after_text"]


def _error(kind: str, backend: str):
    return {
        "limited": lambda: BackendLimited(backend, "rate limited", retry_after=30),
        "limited_after_text": lambda: BackendLimited(backend, "rate limited"),
        "overloaded": lambda: BackendOverloaded(backend, "overloaded"),
        "http500": lambda: BackendFailed(backend, "API Error: 500", upstream_status=500),
        "http400": lambda: BackendFailed(backend, "API Error: 400", upstream_status=400),
        "timeout": lambda: BackendTimeout(backend, 5),
        "plain": lambda: BackendFailed(backend, "it broke", exit_code=1),
    }[kind]()


class OutcomeRunner(FakeBackendRunner):
    """Each run takes the next scripted outcome."""

    def __init__(self, outcomes: list[str]) -> None:
        super().__init__()
        self.outcomes = list(outcomes)

    async def run(self, spec, on_event=None) -> RunResult:
        self.runs.append(spec)
        kind = self.outcomes.pop(0)
        if on_event is not None:
            await on_event(ev.Init(backend_session_id=f"{spec.backend}-t", model=spec.model))
        if kind in ("ok", "limited_after_text") and on_event is not None:
            await on_event(ev.TextDelta(text=f"{spec.backend} says hi"))
        if kind != "ok":
            raise _error(kind, spec.backend)
        return RunResult(backend=spec.backend, output=f"{spec.backend} says hi", exit_code=0,
                         duration_ms=1, model=spec.model, backend_session_id=f"{spec.backend}-t")


def _services(tmp_path, runner, **backends):
    config = Config(
        server=ServerConfig(default_workdir=str(tmp_path)),
        backends={name: BackendConfig(**cfg) for name, cfg in backends.items()},
    )
    store = FakeSessionStore()
    return bootstrap(config, runner=runner, store=store, clock=FakeClock(), ids=FakeIds()), store


def test_plan_reads_backend_and_model_entries():
    """Entries are `backend` or `backend/model` (models may hold `/`); repeats are dropped."""
    targets = plan(Target(backend="claude"), ["codex", "gemini/x/y", "codex", "claude/opus"],
                   KNOWN)
    assert [t.label() for t in targets] == ["claude", "codex", "gemini/x/y", "claude/opus"]


@pytest.mark.parametrize("entry", ["nope", "nope/model", "codex/", ""])
def test_plan_refuses_an_unknown_backend_naming_the_entry(entry):
    """An entry naming no known backend (or an empty model) is a 400 on fallback[i]."""
    with pytest.raises(InvalidRequest) as info:
        plan(Target(backend="claude"), ["codex", entry], KNOWN)
    assert info.value.field == "fallback[1]"


def test_which_failures_are_retryable():
    """Limits, overload, 5xx and timeouts move on; a 4xx or a plain CLI failure does not."""
    assert [retryable(_error(k, "claude")) for k in
            ("limited", "overloaded", "http500", "timeout", "http400", "plain")] == [
        True, True, True, True, False, False
    ]


@given(st.sampled_from(OUTCOMES), st.booleans(), st.booleans())
def test_never_after_text_and_never_without_a_next_target(kind, text_sent, has_next):
    """Whatever the failure, no fallback once text was sent or when no target is left."""
    decision = should_fall_back(_error(kind if kind != "ok" else "plain", "claude"),
                                text_sent=text_sent, has_next=has_next)
    if text_sent or not has_next:
        assert decision is False


@pytest.mark.anyio
@settings(max_examples=80, deadline=None)
@given(st.lists(st.sampled_from(OUTCOMES), min_size=1, max_size=3))
async def test_any_sequence_of_outcomes(tmp_path_factory, outcomes):
    """For any outcomes of claude → codex → gemini: the first success answers; a
    non-retryable failure, a failure after text, or the last target's failure is raised;
    each move is announced by a fallback event."""
    tmp = tmp_path_factory.mktemp("fb")
    runner = OutcomeRunner(outcomes)
    services, store = _services(tmp, runner)
    events: list = []

    async def sink(event):
        events.append(event)

    request = PromptRequest(backend="claude", prompt="hi", fallback=["codex", "gemini"][
        : len(outcomes) - 1])
    expected_runs = 0
    answer = None
    for kind in outcomes:
        expected_runs += 1
        if kind == "ok":
            answer = expected_runs
            break
        is_last = expected_runs == len(outcomes)
        if kind in ("http400", "plain", "limited_after_text") or is_last:
            break
    try:
        result = await services.prompt.run(request, on_event=sink)
    except (BackendFailed, BackendTimeout):
        assert answer is None
    else:
        assert answer is not None
        assert result.backend == KNOWN[answer - 1]
        session = store.sessions[result.session_id]
        assert (session.backend, session.status) == (result.backend, "active")
    assert len(runner.runs) == expected_runs
    moves = [e for e in events if isinstance(e, ev.Fallback)]
    assert [m.next for m in moves] == KNOWN[1:expected_runs]


@pytest.mark.anyio
async def test_fallback_event_says_what_failed_and_why(tmp_path):
    """The fallback event names the failed target, its error and code, and the next one."""
    runner = OutcomeRunner(["limited", "ok"])
    services, _ = _services(tmp_path, runner)
    events: list = []

    async def sink(event):
        events.append(event)

    result = await services.prompt.run(
        PromptRequest(backend="claude", prompt="hi", fallback=["codex/gpt-5"], ephemeral=True),
        on_event=sink,
    )
    (move,) = [e for e in events if isinstance(e, ev.Fallback)]
    assert (move.failed, move.next, move.code) == ("claude", "codex/gpt-5",
                                                  "backend_rate_limited")
    assert move.reason == "rate limited"
    assert (result.backend, result.model) == ("codex", "gpt-5")
    assert runner.runs[1].model == "gpt-5"


@pytest.mark.anyio
async def test_config_fallback_applies_and_a_request_list_replaces_it(tmp_path):
    """`backends.<name>.fallback` is used when the request has none; a request's own list
    replaces it."""
    runner = OutcomeRunner(["overloaded", "ok", "overloaded", "ok"])
    services, _ = _services(tmp_path, runner, claude={"fallback": ["gemini"]})
    first = await services.prompt.run(PromptRequest(backend="claude", prompt="a",
                                                    ephemeral=True))
    second = await services.prompt.run(PromptRequest(backend="claude", prompt="b",
                                                     ephemeral=True, fallback=["codex"]))
    assert (first.backend, second.backend) == ("gemini", "codex")


@pytest.mark.anyio
async def test_extra_flags_stay_with_their_cli_and_missing_clis_are_passed_over(tmp_path):
    """A fallback to another CLI drops `extra` (allow-listed per CLI); a fallback whose CLI
    is not installed is skipped."""
    runner = OutcomeRunner(["http500", "ok"])
    runner.unavailable.add("codex")
    services, _ = _services(tmp_path, runner)
    result = await services.prompt.run(PromptRequest(
        backend="claude", prompt="x", extra=["--foo"], fallback=["codex", "gemini"],
        ephemeral=True,
    ))
    assert result.backend == "gemini"
    assert [r.backend for r in runner.runs] == ["claude", "gemini"]
    assert runner.runs[0].extra == ("--foo",) and runner.runs[1].extra == ()


@pytest.mark.anyio
async def test_a_resumed_session_only_falls_back_to_its_own_cli(tmp_path):
    """Continuing a session whose CLI holds the conversation never moves to another CLI."""
    runner = OutcomeRunner(["ok", "limited", "ok"])
    services, _ = _services(tmp_path, runner)
    first = await services.prompt.run(PromptRequest(backend="claude", prompt="a"))
    with pytest.raises(BackendLimited):
        await services.prompt.run(PromptRequest(backend="claude", prompt="b",
                                                session_id=first.session_id,
                                                fallback=["codex"]))
    result = await services.prompt.run(PromptRequest(
        backend="claude", prompt="c", session_id=first.session_id, fallback=["codex"]))
    assert result.backend == "claude"
    assert [r.backend for r in runner.runs] == ["claude", "claude", "claude"]
