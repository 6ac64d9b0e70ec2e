"""Chain service behaviour and its prompt templates, on fakes of every port."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clinvk.domain.chain import ChainRequest, ChainStep, references, render
from clinvk.domain.config import Config, ServerConfig
from clinvk.domain.errors import InvalidRequest, UnknownBackend
from clinvk.domain.orchestration import RunFinished, RunStarted, RunText
from clinvk.entrypoints.bootstrap import bootstrap
from tests.fakes import FakeClock, FakeIds, FakeSessionStore, ScriptedRunner
from tests.strategies import prompt_text, template_parts
from tests.virtual_time import VIRTUAL_TIME

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    """Virtual time: deadlines fire only once every run that can move has moved."""
    return VIRTUAL_TIME


@pytest.fixture
def runner() -> ScriptedRunner:
    return ScriptedRunner()


def _steps(*specs) -> list[ChainStep]:
    return [ChainStep(**spec) for spec in specs]


async def test_previous_carries_the_last_output_forward(services, runner, store):
    """Each `{{previous}}` becomes the previous step's output; steps keep no session."""
    steps = _steps(
        {"backend": "claude", "prompt": "write"},
        {"backend": "codex", "prompt": "review: {{previous}}"},
        {"backend": "gemini", "prompt": "sum up: {{ previous }}!"},
    )
    result = await services.chain.run(ChainRequest(steps=steps))
    prompts = [spec.prompt for spec in runner.runs]
    assert prompts == [
        "write",
        "review: claude: write",
        "sum up: codex: review: claude: write!",
    ]
    assert [r.index for r in result.results] == [0, 1, 2]
    assert (result.total_steps, result.completed_steps, result.failed_step) == (3, 3, 0)
    assert store.sessions == {} and all(spec.ephemeral for spec in runner.runs)


async def test_named_steps_can_be_quoted_later(services, runner):
    """`{{steps.NAME}}` is the output of the earlier step with that name."""
    steps = _steps(
        {"backend": "claude", "prompt": "draft", "name": "draft"},
        {"backend": "codex", "prompt": "critique"},
        {"backend": "gemini", "prompt": "[{{steps.draft}}] vs [{{previous}}]"},
    )
    await services.chain.run(ChainRequest(steps=steps))
    assert runner.runs[2].prompt == "[claude: draft] vs [codex: critique]"


async def test_failed_step_goes_on_by_default_and_previous_skips_it(services, runner):
    """Without stop_on_failure the chain goes on; `{{previous}}` after a failed step is the
    last completed step's output, and a failed named step quotes as empty text."""
    steps = _steps(
        {"backend": "claude", "prompt": "good"},
        {"backend": "codex", "prompt": "bad [fail]", "name": "bad"},
        {"backend": "gemini", "prompt": "after: {{previous}} / <{{steps.bad}}>"},
    )
    result = await services.chain.run(ChainRequest(steps=steps))
    assert runner.runs[2].prompt == "after: claude: good / <>"
    assert [r.status for r in result.results] == ["completed", "failed", "completed"]
    assert (result.completed_steps, result.failed_step) == (2, 2)
    assert result.results[1].error == "API Error: injected"


async def test_stop_on_failure_skips_the_rest(services, runner):
    """With stop_on_failure the steps after the first failure never run and are skipped."""
    steps = _steps(
        {"backend": "claude", "prompt": "bad [fail]"},
        {"backend": "codex", "prompt": "next"},
        {"backend": "gemini", "prompt": "last"},
    )
    result = await services.chain.run(ChainRequest(steps=steps, stop_on_failure=True))
    assert len(runner.runs) == 1
    assert [r.status for r in result.results] == ["failed", "skipped", "skipped"]
    assert "step 1 failed" in result.results[1].error
    assert (result.total_steps, result.completed_steps, result.failed_step) == (3, 0, 1)


async def test_pass_working_dir_reuses_the_previous_steps_workdir(services, runner, tmp_path):
    """With pass_working_dir a step without workdir runs where the previous step ran."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    steps = _steps(
        {"backend": "claude", "prompt": "a", "workdir": str(elsewhere)},
        {"backend": "codex", "prompt": "b"},
    )
    await services.chain.run(ChainRequest(steps=steps, pass_working_dir=True))
    assert [spec.workdir for spec in runner.runs] == [str(elsewhere)] * 2
    runner.runs.clear()
    await services.chain.run(ChainRequest(steps=steps, pass_working_dir=False))
    assert runner.runs[1].workdir == str(tmp_path)  # the server's default workdir


async def test_step_options_reach_the_run(services, runner):
    """A step's model, approval_mode, sandbox_mode and max_turns reach the CLI run."""
    steps = _steps({"backend": "claude", "prompt": "a", "model": "m1", "approval_mode": "auto",
                    "sandbox_mode": "read-only", "max_turns": 2})
    result = await services.chain.run(ChainRequest(steps=steps))
    spec = runner.runs[0]
    assert (spec.model, spec.approval_mode, spec.sandbox_mode, spec.max_turns) == (
        "m1", "auto", "read-only", 2
    )
    assert result.results[0].model == "m1"


@pytest.mark.parametrize(
    ("steps", "field"),
    [
        ([{"backend": "claude", "prompt": "{{previous}}"}], "steps[0].prompt"),
        ([{"backend": "claude", "prompt": "a"},
          {"backend": "codex", "prompt": "{{steps.later}}"},
          {"backend": "codex", "prompt": "b", "name": "later"}], "steps[1].prompt"),
        ([{"backend": "claude", "prompt": "a", "name": "x"},
          {"backend": "codex", "prompt": "b", "name": "x"}], "steps[1].name"),
        ([{"backend": "claude", "prompt": "a", "name": "has space"}], "steps[0].name"),
        ([{"backend": "claude", "prompt": "a"}, {"backend": "codex", "prompt": " "}],
         "steps[1].prompt"),
        ([{"backend": "claude", "prompt": "a", "workdir": "rel"}], "steps[0].workdir"),
    ],
)
async def test_bad_steps_are_refused_before_anything_runs(services, runner, steps, field):
    """Bad templates, names, prompts or workdirs refuse the chain, naming `steps[i].field`."""
    with pytest.raises(InvalidRequest) as info:
        await services.chain.run(ChainRequest(steps=_steps(*steps)))
    assert info.value.field == field
    assert runner.runs == []


async def test_unknown_backend_names_the_step(services, runner):
    """An unknown backend in any step refuses the chain before the first step runs."""
    steps = _steps({"backend": "claude", "prompt": "a"}, {"backend": "nope", "prompt": "b"})
    with pytest.raises(UnknownBackend) as info:
        await services.chain.run(ChainRequest(steps=steps))
    assert info.value.field == "steps[1].backend"
    assert runner.runs == []


async def test_empty_chain_is_refused(services):
    """A chain without steps is an InvalidRequest on `steps`."""
    with pytest.raises(InvalidRequest) as info:
        await services.chain.run(ChainRequest(steps=[]))
    assert info.value.field == "steps"


async def test_one_deadline_covers_the_whole_chain(runner, tmp_path):
    """At server.request_timeout_secs the running step is ended as timed out and the rest
    are skipped."""
    config = Config(server=ServerConfig(default_workdir=str(tmp_path), request_timeout_secs=60))
    services = bootstrap(config, runner=runner, store=FakeSessionStore(), clock=FakeClock(),
                         ids=FakeIds())
    steps = _steps(
        {"backend": "claude", "prompt": "quick"},
        {"backend": "codex", "prompt": "stuck [hang]"},
        {"backend": "gemini", "prompt": "never"},
    )
    result = await services.chain.run(ChainRequest(steps=steps))
    assert [r.status for r in result.results] == ["completed", "failed", "skipped"]
    assert result.results[1].error_code == "backend_timeout"
    assert "deadline" in result.results[2].error
    assert result.failed_step == 2
    assert runner.cancelled == ["stuck [hang]"]


async def test_progress_tags_every_event_with_the_step(services, runner):
    """Progress events carry the step's index and name, one start and one end per step."""
    events = []

    async def sink(event):
        events.append(event)

    steps = _steps({"backend": "claude", "prompt": "a", "name": "first"},
                   {"backend": "codex", "prompt": "b"})
    await services.chain.run(ChainRequest(steps=steps), sink)
    kinds = [(type(e).__name__, getattr(e, "index", None)) for e in events
             if not isinstance(e, RunText)]
    assert kinds == [("RunStarted", 0), ("RunFinished", None), ("RunStarted", 1),
                     ("RunFinished", None)]
    assert events[0] == RunStarted(index=0, backend="claude", name="first")
    assert [e.outcome.index for e in events if isinstance(e, RunFinished)] == [0, 1]
    assert "".join(e.text for e in events if isinstance(e, RunText) and e.index == 1) == (
        "codex: b"
    )


@given(parts=template_parts, previous=st.text(), values=st.data())
def test_substitution_never_alters_text_outside_placeholders(parts, previous, values):
    """Rendering replaces exactly the placeholders: literal text is kept byte for byte and
    substituted outputs are never expanded again."""
    pairs, tail = parts
    names = {name for _, (kind, name, _) in pairs if kind == "step"}
    outputs = {name: values.draw(st.text(), label=name) for name in sorted(names)}
    template = "".join(literal + written for literal, (_, _, written) in pairs) + tail
    expected = "".join(
        literal + (previous if kind == "previous" else outputs[name])
        for literal, (kind, name, _) in pairs
    ) + tail
    assert render(template, previous, outputs) == expected
    assert references(template) == [name for _, (_, name, _) in pairs]


@given(text=prompt_text)
def test_text_without_placeholders_is_unchanged(text):
    """A prompt with no recognised placeholder is passed on exactly as written."""
    if references(text):
        return
    assert render(text, "PREV", {"a": "A"}) == text


async def test_prompt_blank_after_substitution_fails_only_that_step(services, runner):
    """A step whose prompt is blank once `{{previous}}` is filled in fails as invalid_request."""
    steps = _steps({"backend": "claude", "prompt": "[fail]"},
                   {"backend": "codex", "prompt": " {{previous}} "},
                   {"backend": "gemini", "prompt": "still runs"})
    result = await services.chain.run(ChainRequest(steps=steps))
    assert [r.status for r in result.results] == ["failed", "failed", "completed"]
    assert result.results[1].error_code == "invalid_request"
    assert [spec.backend for spec in runner.runs] == ["claude", "gemini"]
