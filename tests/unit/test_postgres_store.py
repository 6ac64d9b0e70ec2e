"""PostgresSessionStore against a real PostgreSQL: schema migrations, replicas racing on the
same sessions, and the database going away and coming back.

The behaviour every store shares is in test_session_store_contract.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import anyio
import msgspec
import psycopg
import pytest

from clinvk.adapters.sessions.postgres_store import (
    MIGRATIONS,
    PostgresSessionStore,
    is_postgres_url,
    migrate,
)
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
