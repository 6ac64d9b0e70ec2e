"""Prompt service behaviour, on fakes of every port."""

from __future__ import annotations

import pytest

from clinvk.domain import events as ev
from clinvk.domain.errors import (
    BackendFailed,
    BackendUnavailable,
    InvalidRequest,
    SessionNotFound,
    UnknownBackend,
    WorkdirForbidden,
)
from clinvk.domain.models import PromptRequest, TokenUsage

pytestmark = pytest.mark.anyio


async def test_new_prompt_creates_a_session_with_usage(services, runner, store):
    """A non-ephemeral prompt stores a session holding the backend's id, one turn and usage."""
    result = await services.prompt.run(PromptRequest(backend="claude", prompt="hi"))
    assert result.output == "hello from fake"
    session = store.sessions[result.session_id]
    assert session.backend_session_id == "claude-thread-1"
    assert session.turn_count == 1
    assert session.token_usage == TokenUsage(input_tokens=3, output_tokens=3)
    assert session.status == "active"


async def test_ephemeral_prompt_keeps_no_session(services, store):
    """An ephemeral prompt leaves the session store untouched and returns no session id."""
    result = await services.prompt.run(PromptRequest(backend="codex", prompt="hi", ephemeral=True))
    assert result.session_id is None
    assert store.sessions == {}


async def test_resume_passes_the_backend_session_id(services, runner, store):
    """Continuing a session resumes the CLI's own session in the session's workdir."""
    first = await services.prompt.run(PromptRequest(backend="gemini", prompt="one"))
    await services.prompt.run(
        PromptRequest(backend="gemini", prompt="two", session_id=first.session_id)
    )
    assert runner.runs[1].resume_id == "gemini-thread-1"
    assert runner.runs[1].workdir == runner.runs[0].workdir
    assert store.sessions[first.session_id].turn_count == 2


async def test_cumulative_usage_is_turned_into_per_turn_usage(services, runner, store):
    """A CLI that reports thread totals (codex) is charged only the new turn's share."""
    runner.cumulative = True
    runner.usage = TokenUsage(input_tokens=7, output_tokens=5)
    first = await services.prompt.run(PromptRequest(backend="codex", prompt="one"))
    runner.usage = TokenUsage(input_tokens=14, output_tokens=10)
    second = await services.prompt.run(
        PromptRequest(backend="codex", prompt="two", session_id=first.session_id)
    )
    assert second.token_usage == TokenUsage(input_tokens=7, output_tokens=5)
    assert store.sessions[first.session_id].token_usage == TokenUsage(
        input_tokens=14, output_tokens=10
    )


async def test_unknown_session_is_not_found(services):
    """A session id that does not exist is refused before anything runs."""
    with pytest.raises(SessionNotFound):
        await services.prompt.run(PromptRequest(backend="claude", prompt="x", session_id="nope"))


async def test_session_of_another_backend_is_refused(services):
    """A session can only be continued on the backend that started it."""
    first = await services.prompt.run(PromptRequest(backend="claude", prompt="one"))
    with pytest.raises(InvalidRequest) as info:
        await services.prompt.run(
            PromptRequest(backend="codex", prompt="two", session_id=first.session_id)
        )
    assert info.value.field == "backend"


async def test_unknown_and_unavailable_backends(services, runner):
    """Unknown backends are invalid requests; uninstalled ones are unavailable."""
    with pytest.raises(UnknownBackend):
        await services.prompt.run(PromptRequest(backend="nope", prompt="x"))
    runner.unavailable.add("gemini")
    with pytest.raises(BackendUnavailable):
        await services.prompt.run(PromptRequest(backend="gemini", prompt="x"))
    assert runner.runs == []


async def test_failure_marks_session_error_and_carries_partial_result(services, runner, store):
    """A failed run raises BackendFailed with the partial result and marks the session."""
    runner.fail = "API Error: 500"
    with pytest.raises(BackendFailed) as info:
        await services.prompt.run(PromptRequest(backend="claude", prompt="x"))
    result = info.value.result
    assert result.error == "API Error: 500"
    assert store.sessions[result.session_id].status == "error"


async def test_events_stream_with_session_id_and_done(services):
    """Streamed events carry clinvk's session id on init and end with done."""
    seen: list[ev.StreamEvent] = []

    async def sink(event):
        seen.append(event)

    result = await services.prompt.run(PromptRequest(backend="claude", prompt="x"), sink)
    assert isinstance(seen[0], ev.Init) and seen[0].session_id == result.session_id
    assert "".join(e.text for e in seen if isinstance(e, ev.TextDelta)) == result.output
    assert isinstance(seen[-1], ev.Done) and seen[-1].session_id == result.session_id


async def test_options_merge_request_over_config(services, runner, tmp_path):
    """Request options win over backend config, which wins over unified flags."""
    await services.prompt.run(
        PromptRequest(
            backend="claude",
            prompt="x",
            model="m1",
            approval_mode="auto",
            max_turns=3,
            system_prompt="be brief",
            workdir=str(tmp_path),
        )
    )
    spec = runner.runs[0]
    assert (spec.model, spec.approval_mode, spec.max_turns, spec.system_prompt) == (
        "m1",
        "auto",
        3,
        "be brief",
    )
    assert spec.timeout_secs == 300


async def test_workdir_policy(services, tmp_path):
    """Relative, missing and blocked workdirs are refused; symlinks are resolved first."""
    with pytest.raises(InvalidRequest):
        await services.prompt.run(PromptRequest(backend="claude", prompt="x", workdir="rel"))
    with pytest.raises(InvalidRequest):
        await services.prompt.run(
            PromptRequest(backend="claude", prompt="x", workdir=str(tmp_path / "missing"))
        )
    link = tmp_path / "etc-link"
    link.symlink_to("/etc")
    with pytest.raises(WorkdirForbidden):
        await services.prompt.run(PromptRequest(backend="claude", prompt="x", workdir=str(link)))


async def test_dry_run_runs_nothing(services, runner):
    """A dry run returns the command that would run and starts no CLI."""
    result = await services.prompt.run(PromptRequest(backend="codex", prompt="x", dry_run=True))
    assert result.command == ("codex", "--", "x")
    assert runner.runs == []


async def test_empty_prompt_is_invalid(services):
    """An empty or blank prompt names the prompt field."""
    with pytest.raises(InvalidRequest) as info:
        await services.prompt.run(PromptRequest(backend="claude", prompt="  "))
    assert info.value.field == "prompt"


async def test_nul_in_argv_values_is_invalid(services, runner):
    """A NUL character in a value that would travel in argv is a 400 naming the field."""
    with pytest.raises(InvalidRequest) as info:
        await services.prompt.run(PromptRequest(backend="claude", prompt="x", model="a\x00b"))
    assert info.value.field == "model"
    with pytest.raises(InvalidRequest) as info:
        await services.prompt.run(PromptRequest(backend="claude", prompt="x", extra=["--a\x00"]))
    assert info.value.field == "extra"
    assert runner.runs == []
