"""PostgresSessionStore against a real PostgreSQL: schema migrations, replicas racing on the
same sessions, and the database going away and coming back.

The behaviour every store shares is in test_session_store_contract.py.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime

import anyio
import msgspec
import psycopg
import pytest

from clinvk.adapters.sessions.postgres_store import (
    HOLD_LOCK_CLASS,
    MIGRATIONS,
    PostgresSessionStore,
    is_postgres_url,
    migrate,
)
from clinvk.domain.cli_state import CliFile, CliState
from clinvk.domain.errors import SessionBusy, SessionNotFound, SessionStoreUnavailable
from clinvk.domain.models import PromptRequest, Session, SessionQuery
from clinvk.entrypoints.bootstrap import bootstrap
from tests.fakes import FakeBackendRunner, FakeClock, FakeIds
from tests.support.postgres import PostgresServer


def make(session_id: str) -> Session:
    return Session(
        id=session_id, backend="claude", created_at="2026-11-30T00:00:00Z",
        last_used="2026-11-30T00:00:00Z", working_dir="/work",
    )


def test_postgres_urls_are_told_apart() -> None:
    """Only postgresql:// and postgres:// URLs name the PostgreSQL store."""
    assert is_postgres_url("postgresql://u@h/db") and is_postgres_url("postgres://h/db")
    assert not is_postgres_url("") and not is_postgres_url("/var/lib/clinvk/sessions")


@pytest.mark.anyio
async def test_replicas_migrating_at_once_apply_each_version_once(
    postgres_server: PostgresServer,
) -> None:
    """Six connections migrating one empty database together leave every version applied
    exactly once, and migrating again changes nothing."""
    url = postgres_server.new_schema()
    versions: list[int] = []

    async def one() -> None:
        async with await psycopg.AsyncConnection.connect(url) as conn:
            versions.append(await migrate(conn))

    async with anyio.create_task_group() as tg:
        for _ in range(6):
            tg.start_soon(one)
    assert versions == [len(MIGRATIONS)] * 6
    async with await psycopg.AsyncConnection.connect(url) as conn:
        assert await migrate(conn) == len(MIGRATIONS)
        rows = await (await conn.execute("SELECT version FROM clinvk_schema")).fetchall()
    assert sorted(r[0] for r in rows) == list(range(1, len(MIGRATIONS) + 1))


@pytest.mark.anyio
async def test_a_database_of_an_older_version_is_migrated_keeping_its_sessions(
    postgres_server: PostgresServer,
) -> None:
    """A database left at schema version 1 by an older clinvk gets the later versions on
    first use, and its sessions are still there."""
    url = postgres_server.new_schema()
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute("CREATE TABLE clinvk_schema (version integer NOT NULL)")
        for statement in MIGRATIONS[0]:
            await conn.execute(statement)  # type: ignore[arg-type]
        await conn.execute("INSERT INTO clinvk_schema (version) VALUES (1)")
        await conn.execute(
            "INSERT INTO clinvk_sessions (id, backend, status, last_used, record) "
            "VALUES ('old', 'claude', 'active', now(), %s)",
            (msgspec.json.encode(make("old")),),
        )
    store = PostgresSessionStore(url)
    try:
        assert (await store.get("old")) == make("old")
        assert await store.load_cli_state("claude", "t-1") is None  # version 2's table
        async with await psycopg.AsyncConnection.connect(url) as conn:
            rows = await (await conn.execute("SELECT version FROM clinvk_schema")).fetchall()
        assert sorted(r[0] for r in rows) == list(range(1, len(MIGRATIONS) + 1))
    finally:
        await store.aclose()


@pytest.mark.anyio
async def test_two_replicas_of_eight_clients_lose_no_update(
    postgres_server: PostgresServer,
) -> None:
    """8 clients on each of two stores (two pools: two replicas) read-modify-write the same
    three sessions: every update is kept, in one intact record per session."""
    url = postgres_server.new_schema()
    replicas = [PostgresSessionStore(url, max_size=4), PostgresSessionStore(url, max_size=4)]
    ids = ["race-a", "race-b", "race-c"]
    rounds = 6
    try:
        for session_id in ids:
            await replicas[0].create(make(session_id))

        async def client(store: PostgresSessionStore, name: str) -> None:
            for i in range(rounds):
                for session_id in ids:

                    def change(s: Session, mark: str = f"{name}.{i}") -> Session:
                        return msgspec.structs.replace(
                            s,
                            turn_count=s.turn_count + 1,
                            tags=[*s.tags, mark],
                            metadata={**s.metadata, mark: s.turn_count},
                        )

                    await store.update(session_id, change)

        async with anyio.create_task_group() as tg:
            for r, store in enumerate(replicas):
                for c in range(8):
                    tg.start_soon(client, store, f"r{r}c{c}")

        clients = 2 * 8
        for session_id in ids:
            session = await replicas[1].get(session_id)
            assert session.turn_count == clients * rounds
            assert len(session.tags) == len(set(session.tags)) == clients * rounds
            # Each update saw the one before it: the counts it read are 0, 1, 2, ... in order.
            assert [session.metadata[tag] for tag in session.tags] == list(
                range(clients * rounds)
            )
        page = await replicas[0].list(SessionQuery())
        assert sorted(s.id for s in page.sessions) == ids
    finally:
        for store in replicas:
            await store.aclose()


@pytest.mark.anyio
async def test_a_session_running_on_one_replica_is_busy_on_the_other(
    postgres_server: PostgresServer, config
) -> None:
    """A turn of a session another replica holds is refused with SessionBusy; once that
    replica lets go, the turn runs."""
    url = postgres_server.new_schema()
    here, there = PostgresSessionStore(url), PostgresSessionStore(url)
    services = bootstrap(config, runner=FakeBackendRunner(), store=here, clock=FakeClock(),
                         ids=FakeIds())
    try:
        first = await services.prompt.run(PromptRequest(backend="claude", prompt="one"))
        again = PromptRequest(backend="claude", prompt="two", session_id=first.session_id)
        async with there.hold(first.session_id or ""):
            with pytest.raises(SessionBusy):
                await services.prompt.run(again)
        assert (await services.prompt.run(again)).session_id == first.session_id
        assert (await there.get(first.session_id or "")).turn_count == 2
    finally:
        await here.aclose()
        await there.aclose()


async def hold_pids(url: str) -> list[int]:
    """Backend pids holding a session advisory lock in the database of `url`."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        cursor = await conn.execute(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND classid = %s "
            "AND granted ORDER BY pid",
            (HOLD_LOCK_CLASS,),
        )
        return [row[0] for row in await cursor.fetchall()]


@pytest.mark.anyio
async def test_holds_reuse_a_pooled_connection_and_leave_no_lock(
    postgres_server: PostgresServer,
) -> None:
    """Consecutive holds take their lock on the same pooled connection (no connect per
    run), a failed update inside one leaves it usable, and once released no advisory lock
    is left on it."""
    url = postgres_server.new_schema()
    store = PostgresSessionStore(url)
    try:
        await store.create(make("s1"))
        await store.create(make("s2"))
        async with store.hold("s1"):
            first = await hold_pids(url)
        assert await hold_pids(url) == []
        async with store.hold("s2"):
            assert await hold_pids(url) == first

            def failing(session: Session) -> Session:
                raise RuntimeError("the change failed")

            with pytest.raises(RuntimeError):  # the held connection's transaction ends
                await store.update("s2", failing)
            assert (await store.update("s2", bump)).turn_count == 1
        with pytest.raises(RuntimeError):
            async with store.hold("s1"):
                raise RuntimeError("the run failed")
        assert await hold_pids(url) == []
    finally:
        await store.aclose()


@pytest.mark.anyio
async def test_a_cancelled_run_leaves_its_session_free(postgres_server: PostgresServer) -> None:
    """A run cancelled inside its hold (client gone) releases the session: another replica
    can hold it at once, and no lock is left behind on any connection."""
    url = postgres_server.new_schema()
    here, there = PostgresSessionStore(url), PostgresSessionStore(url)
    try:
        await here.create(make("s1"))
        held = anyio.Event()

        async def run() -> None:
            async with here.hold("s1"):
                await here.update("s1", lambda s: s)
                held.set()
                await anyio.sleep_forever()

        async with anyio.create_task_group() as tg:
            tg.start_soon(run)
            await held.wait()
            with pytest.raises(SessionBusy):
                async with there.hold("s1"):
                    pass
            tg.cancel_scope.cancel()
        assert await hold_pids(url) == []
        async with there.hold("s1"):
            pass
    finally:
        await here.aclose()
        await there.aclose()


@pytest.mark.anyio
async def test_a_hold_whose_connection_is_lost_writes_nothing_more(
    postgres_server: PostgresServer,
) -> None:
    """When a run's held connection dies (its lock gone with it), the run's next store call
    fails with SessionStoreUnavailable instead of writing beside whoever holds the session
    now; the dead connection serves no later hold."""
    url = postgres_server.new_schema()
    here, there = PostgresSessionStore(url), PostgresSessionStore(url)
    try:
        await here.create(make("s1"))
        async with here.hold("s1"):
            [pid] = await hold_pids(url)
            async with await psycopg.AsyncConnection.connect(url, autocommit=True) as admin:
                await admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
            while await hold_pids(url):  # the server frees the lock as the backend exits
                await anyio.sleep(0.05)
            async with there.hold("s1"):  # the session is free for another replica now
                await there.update("s1", bump)
            with pytest.raises(SessionStoreUnavailable):
                await here.update("s1", bump)
            with pytest.raises(SessionStoreUnavailable):
                await here.save_cli_state(cli_state_of("t-1"))
        assert (await here.get("s1")).turn_count == 1
        async with here.hold("s1"):
            assert (await hold_pids(url)) not in ([], [pid])
            assert (await here.update("s1", bump)).turn_count == 2
    finally:
        await here.aclose()
        await there.aclose()


@pytest.mark.anyio
async def test_runs_beyond_the_hold_pool_still_exclude(postgres_server: PostgresServer) -> None:
    """With more runs at once than the hold pool keeps, the extra ones hold on connections
    of their own: every session is held once, a second holder is still refused."""
    url = postgres_server.new_schema()
    store, other = PostgresSessionStore(url, hold_pool_size=1), PostgresSessionStore(url)
    try:
        async with contextlib.AsyncExitStack() as stack:
            for name in ("s1", "s2", "s3"):
                await store.create(make(name))
                await stack.enter_async_context(store.hold(name))
                await store.update(name, bump)
            assert len(await hold_pids(url)) == 3
            for name in ("s1", "s2", "s3"):
                with pytest.raises(SessionBusy):
                    async with other.hold(name):
                        pass
        assert await hold_pids(url) == []
        assert [(await other.get(n)).turn_count for n in ("s1", "s2", "s3")] == [1, 1, 1]
    finally:
        await store.aclose()
        await other.aclose()


def bump(session: Session) -> Session:
    return msgspec.structs.replace(session, turn_count=session.turn_count + 1)


def cli_state_of(cli_id: str) -> CliState:
    return CliState(backend="claude", cli_session_id=cli_id,
                    files=[CliFile(path=f"projects/-work/{cli_id}.jsonl", data=b"turn")])


@pytest.fixture
def own_server() -> Iterator[PostgresServer]:
    """A PostgreSQL of this test's own, which it may stop and start."""
    with PostgresServer() as server:
        yield server


@pytest.mark.anyio
async def test_an_outage_is_unavailable_then_recovers(own_server: PostgresServer) -> None:
    """With the database stopped every operation raises SessionStoreUnavailable (naming no
    host); once it is back the same store object works again, without a restart."""
    url = own_server.new_schema()
    store = PostgresSessionStore(url, wait_secs=1)
    try:
        await store.create(make("kept"))
        async with store.hold("kept"):  # leaves an idle held connection, dead after the stop
            pass
        own_server.stop()
        operations = [
            lambda: store.get("kept"),
            lambda: store.update("kept", lambda s: s),
            lambda: store.create(make("new")),
            lambda: store.delete("kept"),
            lambda: store.list(SessionQuery()),
            lambda: store.ids_with_prefix("k", 2),
            lambda: store.count(),
            lambda: store.purge(datetime.now(UTC)),
            lambda: store.hold("kept").__aenter__(),
        ]
        for operation in operations:
            with pytest.raises(SessionStoreUnavailable) as caught:
                await operation()
            assert caught.value.code == "session_store_unavailable"
            assert "127.0.0.1" not in caught.value.message
        own_server.start()
        while True:  # the pool replaces its dead connections; pytest's timeout guards this
            try:
                assert (await store.get("kept")).id == "kept"
                break
            except SessionStoreUnavailable:
                await anyio.sleep(0.2)
        assert await store.count() == 1
        with pytest.raises(SessionNotFound):
            await store.get("new")
        async with store.hold("kept"):
            assert (await store.update("kept", bump)).turn_count == 1
    finally:
        await store.aclose()


@pytest.mark.anyio
async def test_a_database_down_at_start_is_unavailable_then_migrated(
    own_server: PostgresServer,
) -> None:
    """A store whose database is down on first use is unavailable (not broken): when the
    database comes up the schema is created and the store works."""
    url = own_server.new_schema()
    own_server.stop()
    store = PostgresSessionStore(url, wait_secs=1)
    try:
        with pytest.raises(SessionStoreUnavailable):
            await store.count()
        own_server.start()
        while True:
            try:
                assert await store.count() == 0
                break
            except SessionStoreUnavailable:
                await anyio.sleep(0.2)
        await store.create(make("s1"))
        assert (await store.get("s1")).id == "s1"
    finally:
        await store.aclose()
