"""The SessionStore contract: one suite, run against every real store (file and PostgreSQL).

What only one store does (file modes, temp files, flock across OS processes; the SQL schema,
outages) is tested in that store's own module.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path

import anyio
import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clinvk.adapters.sessions.file_store import FileSessionStore
from clinvk.adapters.sessions.postgres_store import PostgresSessionStore
from clinvk.domain.cli_state import CliFile, CliState
from clinvk.domain.errors import SessionBusy, SessionNotFound
from clinvk.domain.models import Session, SessionQuery, TokenUsage
from clinvk.ports import SessionStore

StoreFactory = Callable[[], SessionStore]


@pytest.fixture(params=["file", "postgres"])
def new_store(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    """Makes store objects over one fresh storage (a folder, or a schema of its own);
    two of them are two processes or replicas sharing it."""
    if request.param == "file":
        directory = tmp_path / "sessions"
        return lambda: FileSessionStore(directory)
    url = request.getfixturevalue("postgres_server").new_schema()
    return lambda: PostgresSessionStore(url)


async def close(store: SessionStore) -> None:
    aclose = getattr(store, "aclose", None)
    if aclose is not None:
        await aclose()


@pytest.fixture
async def store(new_store: StoreFactory) -> AsyncIterator[SessionStore]:
    made = new_store()
    yield made
    await close(made)


def make(session_id: str = "s1", **fields: object) -> Session:
    values: dict[str, object] = {
        "backend": "claude",
        "created_at": "2026-11-25T21:09:46.123Z",
        "last_used": "2026-11-25T21:09:46.123Z",
        "working_dir": "/work",
    }
    values.update(fields)
    return Session(id=session_id, **values)  # type: ignore[arg-type]


def bump(session: Session) -> Session:
    return msgspec.structs.replace(session, turn_count=session.turn_count + 1)


@pytest.mark.anyio
async def test_round_trip(store: SessionStore) -> None:
    """A created session is returned unchanged by get."""
    usage = TokenUsage(input_tokens=3)
    session = make(tags=["a"], metadata={"k": [1, 2.5, None]}, token_usage=usage)
    await store.create(session)
    assert await store.get("s1") == session


@pytest.mark.anyio
async def test_create_refuses_existing_id(store: SessionStore) -> None:
    """Creating a session whose id is taken fails and keeps the stored one."""
    await store.create(make(title="first"))
    with pytest.raises(FileExistsError):
        await store.create(make(title="second"))
    assert (await store.get("s1")).title == "first"


@pytest.mark.anyio
async def test_update_returns_and_stores_new_value(store: SessionStore) -> None:
    """update applies the change, stores it and returns it."""
    await store.create(make())
    new = await store.update("s1", bump)
    assert new.turn_count == 1
    assert await store.get("s1") == new


@pytest.mark.anyio
async def test_update_must_keep_id(store: SessionStore) -> None:
    """A change that alters the session id is refused and nothing is written."""
    await store.create(make())
    with pytest.raises(ValueError):
        await store.update("s1", lambda s: msgspec.structs.replace(s, id="other"))
    assert await store.get("s1") == make()
    with pytest.raises(SessionNotFound):
        await store.get("other")


@pytest.mark.anyio
async def test_a_failing_change_writes_nothing(store: SessionStore) -> None:
    """An exception raised by the change reaches the caller and the stored session stays."""

    def broken(session: Session) -> Session:
        raise RuntimeError("no")

    await store.create(make())
    with pytest.raises(RuntimeError):
        await store.update("s1", broken)
    assert await store.get("s1") == make()
    assert (await store.update("s1", bump)).turn_count == 1  # and nothing stays locked


@pytest.mark.anyio
async def test_unknown_ids_are_not_found(store: SessionStore) -> None:
    """get, update and delete of an id that was never stored raise SessionNotFound."""
    with pytest.raises(SessionNotFound):
        await store.get("nope")
    with pytest.raises(SessionNotFound):
        await store.update("nope", bump)
    with pytest.raises(SessionNotFound):
        await store.delete("nope")


@pytest.mark.anyio
async def test_delete_removes_session(store: SessionStore) -> None:
    """A deleted session is gone for get, list, count and a second delete."""
    await store.create(make())
    await store.delete("s1")
    with pytest.raises(SessionNotFound):
        await store.get("s1")
    with pytest.raises(SessionNotFound):
        await store.delete("s1")
    assert (await store.list(SessionQuery())).total == 0
    assert await store.count() == 0


@pytest.mark.anyio
async def test_a_session_whose_cli_id_holds_nul_is_kept_and_deleted(store: SessionStore) -> None:
    """Any text a CLI printed as its session id (even a NUL, which a PostgreSQL text column
    cannot hold) is stored in the record, read back, and the session deleted cleanly."""
    await store.create(make(backend_session_id="a\x00b"))
    assert (await store.get("s1")).backend_session_id == "a\x00b"
    await store.delete("s1")
    assert await store.count() == 0


@pytest.mark.parametrize(
    "bad_id",
    ["../outside", "..", ".", "", "a/b", "/etc/passwd", "a\n", "x.json", "é", "a" * 129, "a b",
     "s%", "a\\b", "a'; DROP TABLE clinvk_sessions; --"],
)
@pytest.mark.anyio
async def test_crafted_ids_are_unknown(store: SessionStore, bad_id: str) -> None:
    """An id outside [A-Za-z0-9_-]{1,128} is never found, updated, deleted or created."""
    await store.create(make("inside"))
    with pytest.raises(SessionNotFound):
        await store.get(bad_id)
    with pytest.raises(SessionNotFound):
        await store.update(bad_id, bump)
    with pytest.raises(SessionNotFound):
        await store.delete(bad_id)
    with pytest.raises(ValueError):
        await store.create(make(bad_id))
    with pytest.raises(SessionNotFound):
        async with store.hold(bad_id):
            pass
    assert await store.ids_with_prefix(bad_id, 5) == []
    assert [s.id for s in (await store.list(SessionQuery())).sessions] == ["inside"]


@pytest.mark.anyio
async def test_ids_with_prefix(store: SessionStore) -> None:
    """ids_with_prefix finds ids by their start only, up to the limit; `_` is no wildcard."""
    for session_id in ("ab_1", "ab_2", "abx3", "b_ab", "a"):
        await store.create(make(session_id))
    assert sorted(await store.ids_with_prefix("ab", 10)) == ["ab_1", "ab_2", "abx3"]
    assert sorted(await store.ids_with_prefix("ab_", 10)) == ["ab_1", "ab_2"]
    assert await store.ids_with_prefix("ab_1", 10) == ["ab_1"]
    assert len(await store.ids_with_prefix("ab", 2)) == 2
    assert await store.ids_with_prefix("zz", 10) == []
    assert await store.ids_with_prefix("", 10) == []


@pytest.mark.anyio
async def test_list_filters_sorts_and_pages(store: SessionStore) -> None:
    """list filters by backend and status, newest last_used first, total counted before paging."""
    stamps = ["2026-01-01T00:00:00.000Z", "2026-03-01T00:00:00.000Z", "2026-02-01T00:00:00+00:00"]
    for i, stamp in enumerate(stamps):
        await store.create(make(f"c{i}", last_used=stamp))
    await store.create(make("g0", backend="gemini", last_used="2026-12-01T00:00:00.000Z"))
    await store.create(make("c9", status="error", last_used="2026-12-01T00:00:00.000Z"))

    everything = await store.list(SessionQuery())
    assert everything.total == 5
    assert [s.id for s in everything.sessions] == ["g0", "c9", "c1", "c2", "c0"]

    claude = await store.list(SessionQuery(backend="claude", status="active"))
    assert [s.id for s in claude.sessions] == ["c1", "c2", "c0"]

    page = await store.list(SessionQuery(backend="claude", limit=2, offset=1))
    assert (page.total, page.limit, page.offset) == (4, 2, 1)
    assert [s.id for s in page.sessions] == ["c1", "c2"]

    past_end = await store.list(SessionQuery(offset=10))
    assert (past_end.sessions, past_end.total) == ([], 5)

    nothing = await store.list(SessionQuery(backend="codex"))
    assert (nothing.sessions, nothing.total) == ([], 0)


@pytest.mark.anyio
async def test_list_orders_by_time_not_by_text(store: SessionStore) -> None:
    """Stamps with offsets are ordered by the moment they name; undated sessions come last."""
    await store.create(make("early", last_used="2026-05-01T10:00:00+02:00"))  # 08:00 UTC
    await store.create(make("late", last_used="2026-05-01T09:00:00Z"))
    await store.create(make("undated", last_used="not a date"))
    page = await store.list(SessionQuery())
    assert [s.id for s in page.sessions] == ["late", "early", "undated"]


@pytest.mark.anyio
async def test_list_follows_updates(store: SessionStore) -> None:
    """An update that changes backend, status or last_used moves the session in list results."""
    await store.create(make("a", last_used="2026-01-01T00:00:00Z"))
    await store.create(make("b", last_used="2026-02-01T00:00:00Z"))
    await store.update(
        "a",
        lambda s: msgspec.structs.replace(
            s, backend="codex", status="error", last_used="2026-03-01T00:00:00Z"
        ),
    )
    assert [s.id for s in (await store.list(SessionQuery())).sessions] == ["a", "b"]
    assert [s.id for s in (await store.list(SessionQuery(backend="codex"))).sessions] == ["a"]
    assert [s.id for s in (await store.list(SessionQuery(status="error"))).sessions] == ["a"]


@pytest.mark.anyio
async def test_empty_store(store: SessionStore) -> None:
    """A store nothing was written to lists nothing and counts zero."""
    page = await store.list(SessionQuery())
    assert (page.sessions, page.total) == ([], 0)
    assert await store.count() == 0


@pytest.mark.anyio
async def test_purge_deletes_only_older_sessions(store: SessionStore) -> None:
    """purge removes sessions last used before the cutoff and keeps newer and undated ones."""
    await store.create(make("old", last_used="2026-01-01T00:00:00.000Z"))
    await store.create(make("new", last_used="2026-06-01T00:00:00.000Z"))
    await store.create(make("odd", last_used="not a date"))
    removed = await store.purge(datetime(2026, 3, 1, tzinfo=UTC))
    assert removed == 1
    remaining = await store.list(SessionQuery())
    assert sorted(s.id for s in remaining.sessions) == ["new", "odd"]
    assert await store.purge(datetime(2026, 3, 1)) == 0  # naive cutoff means UTC


@pytest.mark.anyio
async def test_count(store: SessionStore) -> None:
    """count is the number of stored sessions."""
    for i in range(3):
        await store.create(make(f"s{i}"))
    assert await store.count() == 3


@pytest.mark.anyio
async def test_concurrent_updates_through_two_stores(new_store: StoreFactory) -> None:
    """Many concurrent updates through two store objects on one storage lose nothing."""
    first, second = new_store(), new_store()
    try:
        await first.create(make())
        async with anyio.create_task_group() as tg:
            for _ in range(25):
                tg.start_soon(first.update, "s1", bump)
                tg.start_soon(second.update, "s1", bump)
        assert (await second.get("s1")).turn_count == 50
    finally:
        await close(first)
        await close(second)


@pytest.mark.anyio
async def test_a_hold_excludes_other_holders_until_released(new_store: StoreFactory) -> None:
    """While one store object (process, replica) holds a session, another gets SessionBusy
    for it but not for other sessions, and may still update it; leaving the hold, also by an
    exception, frees it."""
    first, second = new_store(), new_store()
    try:
        await first.create(make())
        async with first.hold("s1"):
            with pytest.raises(SessionBusy):
                async with second.hold("s1"):
                    pass
            async with second.hold("s2"):
                pass
            assert (await second.update("s1", bump)).turn_count == 1
        async with second.hold("s1"):
            pass
        with pytest.raises(RuntimeError):
            async with first.hold("s1"):
                raise RuntimeError("the run failed")
        async with second.hold("s1"):
            with pytest.raises(SessionBusy):
                async with first.hold("s1"):
                    pass
    finally:
        await close(first)
        await close(second)


def cli_state(cli_id: str = "t-1", text: bytes = b"turn 1") -> CliState:
    return CliState(
        backend="claude", cli_session_id=cli_id,
        files=[CliFile(path=f"projects/-work/{cli_id}.jsonl", data=text + b"\x00\xff")],
    )


@pytest.mark.anyio
async def test_cli_state_round_trips_newest_version_first(new_store: StoreFactory) -> None:
    """A CLI session's files come back as saved, from any store object, newest version."""
    first, second = new_store(), new_store()
    try:
        assert await first.load_cli_state("claude", "t-1") is None
        assert await first.save_cli_state(cli_state(text=b"turn 1")) == 1
        assert await second.save_cli_state(cli_state(text=b"turn 2")) == 2
        loaded = await first.load_cli_state("claude", "t-1")
        assert loaded == msgspec.structs.replace(cli_state(text=b"turn 2"), version=2)
        assert await first.load_cli_state("codex", "t-1") is None
        assert await first.load_cli_state("claude", "t-2") is None
    finally:
        await close(first)
        await close(second)


@pytest.mark.anyio
async def test_cli_state_goes_with_its_session(store: SessionStore) -> None:
    """Deleting or purging a session deletes the CLI files kept for it, and only those."""
    await store.create(make("gone", backend_session_id="t-1"))
    await store.create(make("old", backend_session_id="t-2", last_used="2000-01-01T00:00:00Z"))
    await store.create(make("kept", backend_session_id="t-3"))
    for cli_id in ("t-1", "t-2", "t-3"):
        await store.save_cli_state(cli_state(cli_id))
    await store.delete("gone")
    assert await store.purge(datetime(2001, 1, 1, tzinfo=UTC)) == 1
    assert await store.load_cli_state("claude", "t-1") is None
    assert await store.load_cli_state("claude", "t-2") is None
    assert (await store.load_cli_state("claude", "t-3")) is not None


# -- property: any Session survives the store unchanged -------------------------------------

_int64 = st.integers(min_value=0, max_value=2**63 - 1)
_scalar = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
_json = st.recursive(
    _scalar,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=10,
)
sessions = st.builds(
    Session,
    id=st.from_regex(r"[A-Za-z0-9_-]{1,128}", fullmatch=True),
    backend=st.sampled_from(["claude", "codex", "gemini"]),
    created_at=st.text(),
    last_used=st.text()
    | st.datetimes(timezones=st.none() | st.timezones()).map(lambda d: d.isoformat()),
    working_dir=st.text(),
    model=st.none() | st.text(),
    initial_prompt=st.text(),
    status=st.sampled_from(["active", "completed", "error", "paused"]),
    turn_count=_int64,
    token_usage=st.builds(
        TokenUsage,
        input_tokens=_int64,
        output_tokens=_int64,
        cached_tokens=_int64,
        reasoning_tokens=_int64,
    ),
    tags=st.lists(st.text(), max_size=3),
    title=st.text(),
    metadata=st.dictionaries(st.text(), _json, max_size=3),
    backend_session_id=st.none() | st.text(),
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(session=sessions)
def test_any_session_round_trips(new_store: StoreFactory, session: Session) -> None:
    """Any valid Session (NUL characters, any text, any stamp) is stored and read back
    unchanged, and is listed once."""

    async def round_trip() -> None:
        store = new_store()
        try:
            await store.create(session)
            assert await store.get(session.id) == session
            assert (await store.list(SessionQuery())).sessions == [session]
        finally:
            with contextlib.suppress(SessionNotFound):
                await store.delete(session.id)  # the next example starts empty
            await close(store)

    anyio.run(round_trip)
