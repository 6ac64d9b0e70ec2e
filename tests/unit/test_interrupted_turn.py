"""A turn cancelled before it finished (client gone, server stopping) leaves its session
`error` with the reason, never `active` as if it had completed."""

from __future__ import annotations

import anyio
import pytest

from clinvk.domain.config import Config
from clinvk.domain.errors import SessionStoreUnavailable
from clinvk.domain.models import PromptRequest
from clinvk.domain.prompt import INTERRUPTED
from clinvk.entrypoints.bootstrap import bootstrap
from tests.fakes import FakeBackendRunner, FakeClock, FakeIds, FakeSessionStore

pytestmark = pytest.mark.anyio


async def _cancelled_turn(store: FakeSessionStore) -> None:
    runner = FakeBackendRunner()
    runner.hang = True  # the CLI is busy until the run is cancelled
    services = bootstrap(Config(), runner=runner, store=store, clock=FakeClock(), ids=FakeIds())
    with anyio.move_on_after(0.2) as scope:  # the client leaves
        await services.prompt.run(PromptRequest(backend="claude", prompt="a long task"))
    assert scope.cancelled_caught


async def test_a_cancelled_turn_marks_its_session_error_with_the_reason():
    """The session of a turn cancelled mid-run is `error` with INTERRUPTED as its error."""
    store = FakeSessionStore()
    await _cancelled_turn(store)
    [session] = store.sessions.values()
    assert session.status == "error" and session.error == INTERRUPTED


class _FullStore(FakeSessionStore):
    async def update(self, session_id, change):
        raise SessionStoreUnavailable("save the session", "the disk is full (ENOSPC)")


async def test_a_store_failure_does_not_replace_the_cancellation():
    """When the store cannot record the interruption, the cancellation still goes through
    (the caller sees a cancelled run, not a store error)."""
    store = _FullStore()
    await _cancelled_turn(store)
    [session] = store.sessions.values()
    assert session.status == "active"  # could not be written; nothing else went wrong
