"""PostgresSessionStore: sessions in one PostgreSQL table, shared by every replica.

Schema (created and migrated by clinvk itself, see MIGRATIONS):

    clinvk_schema     one row per applied migration (version)
    clinvk_sessions   id (C collation, primary key), backend, status, last_used (timestamptz,
                      NULL when the record's stamp does not parse), record (the Session as
                      msgspec JSON, bytea: PostgreSQL text refuses NUL, a prompt may hold one)
    clinvk_cli_state  the CLIs' own files of a session (backend, cli_session_id, version),
                      msgpack + zlib; the last CLI_STATE_VERSIONS versions are kept, and they
                      go with their session

The columns beside `record` exist for SQL: listing filters, orders and pages in the
database, purge deletes by `last_used`, prefix lookup uses the primary key's index.

Exclusion: `update` reads the row `FOR UPDATE` inside its transaction, so read-modify-write
is atomic across replicas exactly as the file store's flock makes it across processes. A run
`hold`s its session with a session-level advisory lock on a connection of a second pool (a
long run must not drain the pool the short statements use); the lock goes with that
connection, so a replica that dies mid-run frees its sessions. While the hold lasts, the
run's own store calls go through that same connection: no pool check-out per call, and a
connection lost mid-run (so the lock lost with it) fails them with SessionStoreUnavailable
rather than letting the run write beside another replica's. A held connection goes back to
its pool only after the unlock was confirmed; one whose lock state is unknown (broken,
cancelled, left in a transaction) is closed, so a lock never travels to another run.
Migrations run under a transaction-level advisory lock, so replicas starting together apply
each one once.

Faults: anything that stops a statement (server down, connection lost, no connection within
the pool's wait, a server-side resource error) becomes SessionStoreUnavailable; the pool
replaces broken connections, so the store recovers by itself when the server is back.
"""

from __future__ import annotations

import builtins
import contextlib
import contextvars
import hashlib
import zlib
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

import anyio
import msgspec
import psycopg
from psycopg.pq import TransactionStatus
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from clinvk.adapters.logging import get_logger
from clinvk.adapters.sessions.file_store import valid_id
from clinvk.domain.cli_state import CliFile, CliState
from clinvk.domain.errors import SessionBusy, SessionNotFound, SessionStoreUnavailable
from clinvk.domain.models import Session, SessionPage, SessionQuery

#: Key of the advisory lock migrations hold ("clinvk" in ASCII).
MIGRATION_LOCK = 0x636C696E766B
#: First key of the advisory locks that hold sessions for a run (the second is the id's hash).
HOLD_LOCK_CLASS = 0x636C6976

#: One tuple of statements per schema version, applied in order, never edited once shipped.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """
        CREATE TABLE clinvk_sessions (
            id text COLLATE "C" PRIMARY KEY,
            backend text NOT NULL,
            status text NOT NULL,
            last_used timestamptz,
            record bytea NOT NULL
        )
        """,
        (
            "CREATE INDEX clinvk_sessions_recent "
            "ON clinvk_sessions (last_used DESC NULLS LAST, id DESC)"
        ),
        (
            "CREATE INDEX clinvk_sessions_backend "
            "ON clinvk_sessions (backend, status, last_used DESC NULLS LAST, id DESC)"
        ),
    ),
    (
        # The CLIs' own session files (domain/cli_state.py), a few versions per CLI session.
        """
        CREATE TABLE clinvk_cli_state (
            backend text NOT NULL,
            cli_session_id text NOT NULL,
            version integer NOT NULL,
            saved_at timestamptz NOT NULL DEFAULT now(),
            files bytea NOT NULL,
            PRIMARY KEY (backend, cli_session_id, version)
        )
        """,
    ),
)

#: How long a request waits for a connection while the database is known to be down.
DOWN_WAIT_SECS = 0.5
#: How long the pool keeps retrying one lost connection before it starts afresh.
RECONNECT_SECS = 20.0

#: Versions of a CLI session's files kept (the newest is the one restored).
CLI_STATE_VERSIONS = 3

#: Held connections kept for reuse; runs beyond this many at once hold on a connection
#: opened for the run (correct, only slower), so the pool never makes a run wait.
HOLD_POOL_SIZE = 16

_log = get_logger("clinvk.sessions")

_PIPELINE = psycopg.Pipeline.is_supported()

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Session)
_files_encoder = msgspec.msgpack.Encoder()
_files_decoder = msgspec.msgpack.Decoder(list[CliFile])

_LIST = """
    SELECT record, count(*) OVER () FROM clinvk_sessions
    WHERE (%(backend)s::text IS NULL OR backend = %(backend)s)
      AND (%(status)s::text IS NULL OR status = %(status)s)
    ORDER BY last_used DESC NULLS LAST, id DESC
    LIMIT %(limit)s OFFSET %(offset)s
"""
# One statement: the next version, and the versions it pushes out (the DELETE sees the
# rows as they were before the INSERT, so it never removes the new one).
_SAVE_CLI_STATE = """
    WITH saved AS (
        INSERT INTO clinvk_cli_state (backend, cli_session_id, version, files)
        SELECT %(backend)s, %(id)s, coalesce(max(version), 0) + 1, %(files)s
        FROM clinvk_cli_state WHERE backend = %(backend)s AND cli_session_id = %(id)s
        RETURNING version
    ), dropped AS (
        DELETE FROM clinvk_cli_state
        WHERE backend = %(backend)s AND cli_session_id = %(id)s
          AND version <= (SELECT version FROM saved) - %(keep)s
    )
    SELECT version FROM saved
"""
_COUNT = """
    SELECT count(*) FROM clinvk_sessions
    WHERE (%(backend)s::text IS NULL OR backend = %(backend)s)
      AND (%(status)s::text IS NULL OR status = %(status)s)
"""


def is_postgres_url(value: str) -> bool:
    """Whether a `session.store` value names a PostgreSQL database."""
    return value.startswith(("postgresql://", "postgres://"))


class PostgresSessionStore:
    """SessionStore in a PostgreSQL database, safe to share between replicas."""

    kind = "postgresql"

    def __init__(
        self,
        conninfo: str,
        *,
        max_size: int = 8,
        wait_secs: float = 5.0,
        hold_pool_size: int = HOLD_POOL_SIZE,
    ) -> None:
        """`wait_secs`: how long a request waits for a connection before it is told the store
        is unavailable (a down server is found out in this time at most). Once the database
        is known to be down, requests wait only DOWN_WAIT_SECS, so /health and the 503s stay
        quick during an outage, until a connection works again."""
        self._conninfo = conninfo
        self._wait_secs = wait_secs
        # Autocommit: a single statement needs no BEGIN/COMMIT round trips; the calls that
        # need more than one statement open their transaction themselves.
        self._connect_args = {"autocommit": True, "connect_timeout": max(1, int(wait_secs))}
        self._pool = AsyncConnectionPool(
            conninfo,
            min_size=1,
            max_size=max_size,
            open=False,
            timeout=wait_secs,
            check=AsyncConnectionPool.check_connection,
            kwargs=self._connect_args,
            # The pool retries a lost connection with a growing back-off; giving up after
            # this long (and starting afresh on the next request) bounds how late it notices
            # the database is back after a long outage.
            reconnect_timeout=RECONNECT_SECS,
            name="clinvk-sessions",
        )
        # The holds' connections: none until runs need them, reused after. No check on
        # check-out: the lock statement itself finds a broken one (see _take).
        self._hold_pool = AsyncConnectionPool(
            conninfo,
            min_size=0,
            max_size=hold_pool_size,
            open=False,
            timeout=wait_secs,
            kwargs=self._connect_args,
            reconnect_timeout=RECONNECT_SECS,
            name="clinvk-holds",
        )
        self._holds = 0
        # The hold the current task is inside (this store's only: replicas in one process,
        # as in the tests, must not use each other's).
        self._held: contextvars.ContextVar[_Hold | None] = contextvars.ContextVar(
            f"clinvk_hold_{id(self)}", default=None
        )
        self._down = False
        self._opened = False
        self._migrated = False
        self._starting = anyio.Lock()

    async def aclose(self) -> None:
        """Close the pool's connections (at shutdown)."""
        if self._opened:
            await self._pool.close()
            await self._hold_pool.close()
            self._opened = False

    async def create(self, session: Session) -> None:
        """Store a new session; an invalid id is refused, a taken one is FileExistsError."""
        if not valid_id(session.id):
            raise ValueError(f"invalid session id {session.id!r}")
        async with self._connection("save the session") as conn:
            cursor = await conn.execute(
                "INSERT INTO clinvk_sessions (id, backend, status, last_used, record) "
                "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (id) DO NOTHING",
                (session.id, *_columns(session)),
            )
            if cursor.rowcount != 1:
                raise FileExistsError(f"session {session.id!r} already exists")

    async def get(self, session_id: str) -> Session:
        """Return one session or raise SessionNotFound."""
        if not valid_id(session_id):
            raise SessionNotFound(session_id)
        async with self._connection("read the session") as conn:
            cursor = await conn.execute(
                "SELECT record FROM clinvk_sessions WHERE id = %s", (session_id,)
            )
            row = await cursor.fetchone()
        session = _load(row, session_id)
        if session is None:
            raise SessionNotFound(session_id)
        return session

    async def update(self, session_id: str, change: Callable[[Session], Session]) -> Session:
        """Apply `change` with the row locked (across replicas); return the new value."""
        if not valid_id(session_id):
            raise SessionNotFound(session_id)
        async with self._connection("save the session") as conn, _pipeline(conn):
            # Two round trips in pipeline mode: BEGIN goes with the SELECT, the UPDATE with
            # the COMMIT (psycopg's transaction() would wait for the server at each edge).
            await conn.execute("BEGIN")
            cursor = await conn.execute(
                "SELECT record FROM clinvk_sessions WHERE id = %s FOR UPDATE", (session_id,)
            )
            try:
                current = _load(await cursor.fetchone(), session_id)
                if current is None:
                    raise SessionNotFound(session_id)
                new = change(current)
                if new.id != current.id:
                    raise ValueError("a session update must not change the session id")
            except Exception:
                await conn.execute("ROLLBACK")
                raise
            await conn.execute(
                "UPDATE clinvk_sessions SET backend = %s, status = %s, last_used = %s, "
                "record = %s WHERE id = %s",
                (*_columns(new), session_id),
            )
            await conn.execute("COMMIT")
            return new

    async def delete(self, session_id: str) -> None:
        """Remove a session or raise SessionNotFound."""
        if not valid_id(session_id):
            raise SessionNotFound(session_id)
        async with self._connection("delete the session") as conn, conn.transaction():
            cursor = await conn.execute(
                "DELETE FROM clinvk_sessions WHERE id = %s RETURNING record", (session_id,)
            )
            rows = await cursor.fetchall()
            if not rows:
                raise SessionNotFound(session_id)
            await _drop_cli_state(conn, rows)

    async def ids_with_prefix(self, prefix: str, limit: int) -> builtins.list[str]:
        """Up to `limit` session ids starting with `prefix` (the primary key's index)."""
        if not prefix or not valid_id(prefix) or limit <= 0:
            return []
        # "_" is a LIKE wildcard and a valid id character; "%" and "\\" never are ids'.
        pattern = prefix.replace("_", "\\_") + "%"
        async with self._connection("list the sessions") as conn:
            cursor = await conn.execute(
                "SELECT id FROM clinvk_sessions WHERE id LIKE %s LIMIT %s", (pattern, limit)
            )
            return [row[0] for row in await cursor.fetchall()]

    async def list(self, query: SessionQuery) -> SessionPage:
        """Sessions matching the query, most recently used first, filtered and paged in SQL."""
        params = {
            "backend": query.backend,
            "status": query.status,
            "limit": query.limit,
            "offset": query.offset,
        }
        async with self._connection("list the sessions") as conn:
            rows = await (await conn.execute(_LIST, params)).fetchall()
            if rows:
                total = rows[0][1]
            else:  # past the end (or nothing matched): the window gave no total
                total = (await (await conn.execute(_COUNT, params)).fetchone())[0]
        sessions = [s for s in (_load(row, None) for row in rows) if s is not None]
        return SessionPage(
            sessions=sessions, total=total, limit=query.limit, offset=query.offset
        )

    async def purge(self, last_used_before: datetime) -> int:
        """Delete sessions last used before the given time (undated ones are kept)."""
        cutoff = _aware(last_used_before)
        async with self._connection("delete expired sessions") as conn, conn.transaction():
            cursor = await conn.execute(
                "DELETE FROM clinvk_sessions WHERE last_used < %s RETURNING record", (cutoff,)
            )
            rows = await cursor.fetchall()
            await _drop_cli_state(conn, rows)
            return len(rows)

    async def save_cli_state(self, state: CliState) -> int:
        """Store the next version of a CLI session's files (compressed); keep the last few."""
        if not _storable(state.cli_session_id):
            return 0  # nothing a CLI really names; kept nowhere, as a text column holds no NUL
        blob = zlib.compress(_files_encoder.encode(state.files))
        params = {
            "backend": state.backend, "id": state.cli_session_id, "files": blob,
            "keep": CLI_STATE_VERSIONS,
        }
        async with self._connection("save the CLI's session files") as conn:
            return (await (await conn.execute(_SAVE_CLI_STATE, params)).fetchone())[0]

    async def load_cli_state(self, backend: str, cli_session_id: str) -> CliState | None:
        """The newest stored files of a CLI session, or None."""
        if not _storable(cli_session_id):
            return None
        async with self._connection("read the CLI's session files") as conn:
            cursor = await conn.execute(
                "SELECT version, files FROM clinvk_cli_state "
                "WHERE backend = %s AND cli_session_id = %s ORDER BY version DESC LIMIT 1",
                (backend, cli_session_id),
            )
            row = await cursor.fetchone()
        if row is None:
            return None
        try:
            files = _files_decoder.decode(zlib.decompress(row[1]))
        except (zlib.error, msgspec.DecodeError):
            return None
        return CliState(
            backend=backend, cli_session_id=cli_session_id, files=files, version=row[0]
        )

    async def count(self) -> int:
        """Number of stored sessions; SessionStoreUnavailable when the database is not."""
        async with self._connection("count the sessions") as conn:
            return (await (await conn.execute("SELECT count(*) FROM clinvk_sessions")).fetchone())[0]

    @contextlib.asynccontextmanager
    async def hold(self, session_id: str) -> AsyncIterator[None]:
        """Hold the session for one run across replicas (SessionBusy when another has it)."""
        if not valid_id(session_id):
            raise SessionNotFound(session_id)
        held = await self._take(session_id)
        token = self._held.set(held)
        try:
            yield
        finally:
            with contextlib.suppress(ValueError):  # left from another context: nothing set
                self._held.reset(token)
            with anyio.CancelScope(shield=True):
                await self._release(held)

    # -- connections and schema ------------------------------------------------------------

    async def _take(self, session_id: str) -> _Hold:
        """A connection holding the session's advisory lock (SessionBusy if another has it)."""
        key = (HOLD_LOCK_CLASS, _key(session_id))
        wait = self._wait()
        try:
            await self._start(wait)
            pooled = self._holds < self._hold_pool.max_size
            # An idle pooled connection may have died since its last use (a database
            # restart): the lock statement finds out, and the next one is tried. Bounded:
            # the pool has no more than that many, then it connects afresh.
            for attempt in range(self._hold_pool.max_size + 1):
                conn = await self._hold_connection(pooled, wait)
                try:
                    cursor = await conn.execute("SELECT pg_try_advisory_lock(%s, %s)", key)
                    row = await cursor.fetchone()
                except (psycopg.OperationalError, psycopg.InterfaceError):
                    await self._discard(conn, pooled)
                    if attempt == self._hold_pool.max_size:
                        raise
                    continue
                except BaseException:
                    # Cancelled with the statement in flight: whether it locked is unknown.
                    with anyio.CancelScope(shield=True):
                        await self._discard(conn, pooled)
                    raise
                break
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            self._down = True
            raise SessionStoreUnavailable("hold the session", _cause(exc)) from exc
        self._down = False
        if not (row and row[0]):
            await self._give_back(conn, pooled)
            raise SessionBusy(session_id)
        self._holds += 1
        return _Hold(conn, key, pooled)

    async def _hold_connection(self, pooled: bool, wait: float) -> psycopg.AsyncConnection:
        if pooled:
            return await self._hold_pool.getconn(timeout=wait)
        return await psycopg.AsyncConnection.connect(self._conninfo, **self._connect_args)

    async def _release(self, held: _Hold) -> None:
        """Unlock and give the connection back; close it when the unlock is not certain."""
        conn = held.conn
        if conn is None:
            return
        self._holds -= 1
        released = False
        with anyio.move_on_after(self._wait_secs):
            async with held.lock:  # a call of the run still on it finishes first
                held.conn = None
                with contextlib.suppress(psycopg.Error):
                    cursor = await conn.execute("SELECT pg_advisory_unlock(%s, %s)", held.key)
                    row = await cursor.fetchone()
                    released = bool(row and row[0]) and (
                        conn.info.transaction_status == TransactionStatus.IDLE
                    )
        held.conn = None
        if released:
            await self._give_back(conn, held.pooled)
            return
        # Lost (the connection broke: the server freed the lock when it noticed) or unknown:
        # this connection serves no other run.
        _log.warning("session hold ended without a confirmed unlock; connection closed",
                     broken=conn.broken)
        await self._discard(conn, held.pooled)

    async def _give_back(self, conn: psycopg.AsyncConnection, pooled: bool) -> None:
        if pooled:
            await self._hold_pool.putconn(conn)
        else:
            await conn.close()

    async def _discard(self, conn: psycopg.AsyncConnection, pooled: bool) -> None:
        await conn.close()
        if pooled:
            await self._hold_pool.putconn(conn)  # the pool drops a closed connection

    def _wait(self) -> float:
        return DOWN_WAIT_SECS if self._down else self._wait_secs

    @contextlib.asynccontextmanager
    async def _connection(self, action: str) -> AsyncIterator[psycopg.AsyncConnection]:
        """A connection (autocommit) for one call: the run's held one inside a hold, else a
        pooled one; database faults become SessionStoreUnavailable."""
        held = self._held.get()
        if held is not None and held.conn is not None:
            async with held.lock:
                if held.conn is not None:
                    try:
                        yield held.conn
                    except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                        self._down = True
                        raise SessionStoreUnavailable(action, _cause(exc)) from exc
                    finally:
                        await _idle(held.conn)
                    return
        wait = self._wait()
        try:
            await self._start(wait)
            async with self._pool.connection(timeout=wait) as conn:
                self._down = False
                yield conn
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            self._down = True
            raise SessionStoreUnavailable(action, _cause(exc)) from exc

    async def _start(self, wait: float) -> None:
        if self._migrated:
            return
        async with self._starting:
            if not self._opened:
                # Connections are made in the background; a down server is not an error yet.
                await self._pool.open(wait=False)
                await self._hold_pool.open(wait=False)
                self._opened = True
            if not self._migrated:
                async with self._pool.connection(timeout=wait) as conn:
                    await migrate(conn)
                self._migrated = True


class _Hold:
    """One run's hold: the connection with the session's advisory lock, used by the run's
    own store calls one at a time (`lock`); `conn` is None once released."""

    __slots__ = ("conn", "key", "lock", "pooled")

    def __init__(
        self, conn: psycopg.AsyncConnection, key: tuple[int, int], pooled: bool
    ) -> None:
        self.conn: psycopg.AsyncConnection | None = conn
        self.key = key
        self.pooled = pooled
        self.lock = anyio.Lock()


async def _idle(conn: psycopg.AsyncConnection) -> None:
    """End a transaction a failed call left open, as the pool does for its connections
    (the held one is not returned between calls)."""
    status = conn.info.transaction_status
    if status in (TransactionStatus.INTRANS, TransactionStatus.INERROR) and not conn.broken:
        with anyio.CancelScope(shield=True), contextlib.suppress(psycopg.Error):
            await conn.rollback()


def _pipeline(conn: psycopg.AsyncConnection) -> contextlib.AbstractAsyncContextManager:
    """Pipeline mode where libpq has it (statements sent together, fewer round trips)."""
    return conn.pipeline() if _PIPELINE else contextlib.nullcontext()


async def migrate(conn: psycopg.AsyncConnection) -> int:
    """Bring the schema to the latest version under the migration lock; return that version."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        await conn.execute("CREATE TABLE IF NOT EXISTS clinvk_schema (version integer NOT NULL)")
        row = await (await conn.execute("SELECT max(version) FROM clinvk_schema")).fetchone()
        current = (row[0] if row else None) or 0
        for version in range(current + 1, len(MIGRATIONS) + 1):
            for statement in MIGRATIONS[version - 1]:
                await conn.execute(statement)  # type: ignore[arg-type]  # fixed SQL, no input
            await conn.execute("INSERT INTO clinvk_schema (version) VALUES (%s)", (version,))
    return max(current, len(MIGRATIONS))


async def _drop_cli_state(conn: psycopg.AsyncConnection, rows: builtins.list[tuple]) -> None:
    """Delete the CLI session files of the deleted sessions in `rows` (their records)."""
    for row in rows:
        session = _load(row, None)
        # A text column holds no NUL: an id with one never had files stored under it.
        if session is not None and _storable(session.backend_session_id):
            await conn.execute(
                "DELETE FROM clinvk_cli_state WHERE cli_session_id = %s",
                (session.backend_session_id,),
            )


def _storable(cli_session_id: str | None) -> bool:
    """Whether files can be stored under this CLI session id (non-empty, no NUL)."""
    return bool(cli_session_id) and "\x00" not in cli_session_id  # type: ignore[operator]


def _columns(session: Session) -> tuple[str, str, datetime | None, bytes]:
    return session.backend, session.status, _when(session.last_used), _encoder.encode(session)


def _load(row: tuple | None, session_id: str | None) -> Session | None:
    """The session in a row; None when absent, undecodable or not under its own id."""
    if row is None:
        return None
    try:
        session = _decoder.decode(row[0])
    except msgspec.DecodeError:
        return None
    return session if session_id in (None, session.id) else None


def _key(session_id: str) -> int:
    # A hash every replica computes alike (Python's hash() is salted per process).
    digest = hashlib.blake2b(session_id.encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big", signed=True)


def _cause(exc: Exception) -> str:
    # Said without the server's own words: they can carry host names and user names.
    if isinstance(exc, PoolTimeout):
        return "PostgreSQL gave no connection in time (the server may be down)"
    sqlstate = getattr(exc, "sqlstate", None)
    if sqlstate:
        return f"PostgreSQL failed the statement ({type(exc).__name__}, SQLSTATE {sqlstate})"
    return "PostgreSQL cannot be reached (connection lost)"


def _when(stamp: str) -> datetime | None:
    try:
        return _aware(datetime.fromisoformat(stamp))
    except ValueError:
        return None


def _aware(moment: datetime) -> datetime:
    # Timestamps without an offset are taken as UTC, which is what clinvk writes.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
