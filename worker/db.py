"""One engine per process, a session per unit of work, and the per-project lock."""

from __future__ import annotations

import enum
import threading
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from psycopg.types.json import Json
from sqlalchemy import (
    ARRAY,
    JSON,
    Column,
    ColumnElement,
    Connection,
    DateTime,
    Engine,
    Enum,
    MetaData,
    Select,
    Table,
    any_,
    bindparam,
    create_engine,
    event,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.types import TypeDecorator

from worker.settings import get_settings


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA journal_mode=WAL")
            cur.close()

        return engine
    # TCP keepalives: a lock connection whose server went away is noticed in about a minute, not hours.
    keepalives = {"keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10, "keepalives_count": 3}
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5, connect_args=keepalives)


_engines: dict[str, Engine] = {}
_engines_guard = threading.Lock()


def get_engine(url: str | None = None) -> Engine:
    url = url or get_settings().database_url
    with _engines_guard:
        if url not in _engines:
            _engines[url] = make_engine(url)
        return _engines[url]


def dispose_engines() -> None:
    """Drop pooled connections (after a fork, a child must not share its parent's sockets)."""
    with _engines_guard:
        for engine in _engines.values():
            engine.dispose(close=False)
        _engines.clear()


def session_factory(url: str | None = None) -> sessionmaker[Session]:
    return sessionmaker(bind=get_engine(url), expire_on_commit=False)


@contextmanager
def session_scope(url: str | None = None) -> Iterator[Session]:
    """A unit of work: commit on success, roll back on any error."""
    session = session_factory(url)()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


class ProjectBusy(RuntimeError):
    """Another sync of the same project holds its lock."""


class LockLost(RuntimeError):
    """The run no longer holds its project's lock (its lock connection died: a database restart, a failover, an
    idle timeout, a pooler); it must not write to Procore any more."""


_local_locks: dict[tuple[str, int], threading.Lock] = {}
_local_locks_guard = threading.Lock()

# Keeps advisory lock ids of stsync apart from any other user of the same database.
LOCK_NAMESPACE = 0x5751
# The two-key advisory lock shows in pg_locks as classid = first key, objid = second key, objsubid = 2.
_HOLDING = text(
    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = :ns AND objid = :id "
    "AND objsubid = 2 AND pid = pg_backend_pid() AND granted"
)


class HeldLock:
    """The per-project lock of one run. `check()` proves the run still holds it; it is called before every write
    to Procore, because a lock taken once at the start is not proof an hour later."""

    def __init__(self, link_id: int, conn: Connection | None = None) -> None:
        self.link_id = link_id
        self._conn = conn
        self._lost: str | None = None
        self._guard = threading.Lock()  # chunks are sent from several threads; the connection is not shared

    def check(self) -> None:
        if self._conn is None:
            return  # the SQLite demo: a process-local lock that cannot be lost
        with self._guard:
            self._check()

    def _check(self) -> None:
        if self._lost is None:
            try:
                held = self._conn.execute(_HOLDING, {"ns": LOCK_NAMESPACE, "id": self.link_id}).scalar()
            except SQLAlchemyError as exc:
                cause = getattr(exc, "orig", None) or exc
                self._lost = f"its lock connection failed ({type(cause).__name__})"
            else:
                if not held:
                    self._lost = "the database no longer shows its lock"
        if self._lost is not None:
            raise LockLost(f"the sync of project link {self.link_id} lost its project lock: {self._lost}; "
                           "it stopped before sending anything more to Procore")


@contextmanager
def project_lock(engine: Engine, link_id: int, *, wait: bool = False) -> Iterator[HeldLock]:
    """Hold the per-project lock for the duration of a sync (DESIGN §3 step 1).

    On PostgreSQL this is a session-level advisory lock on a dedicated connection (with TCP keepalives, so a dead
    peer is noticed), so it outlives the sync's own transactions and is released by the server if the worker dies.
    SQLite (the demo) runs in one process, where a process-local lock is enough.
    """
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            if wait:
                conn.execute(text("SELECT pg_advisory_lock(:ns, :id)"), {"ns": LOCK_NAMESPACE, "id": link_id})
            else:
                got = conn.execute(
                    text("SELECT pg_try_advisory_lock(:ns, :id)"), {"ns": LOCK_NAMESPACE, "id": link_id}
                ).scalar()
                if not got:
                    raise ProjectBusy(f"another sync of project link {link_id} is running")
            try:
                yield HeldLock(link_id, conn)
            finally:
                try:
                    conn.execute(text("SELECT pg_advisory_unlock(:ns, :id)"), {"ns": LOCK_NAMESPACE, "id": link_id})
                except SQLAlchemyError:
                    conn.invalidate()  # the connection (and with it the lock) is gone already
        return
    with _local_locks_guard:
        lock = _local_locks.setdefault((str(engine.url), link_id), threading.Lock())
    if not lock.acquire(blocking=wait):
        raise ProjectBusy(f"another sync of project link {link_id} is running")
    try:
        yield HeldLock(link_id)
    finally:
        lock.release()


def is_postgresql(s: Session) -> bool:
    """The product's database; anything else is the SQLite demo, which gets the portable statements."""
    return s.get_bind().dialect.name == "postgresql"


def dialect_insert(s: Session, table: Table) -> Any:
    """INSERT with ON CONFLICT for the session's database (PostgreSQL, or SQLite in the demo)."""
    return (pg_insert if is_postgresql(s) else sqlite_insert)(table)


def insert_many(s: Session, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert many rows inside the session's transaction. On PostgreSQL by COPY, which takes thousands of rows
    several times faster than an executemany INSERT (the driver and the server handle one stream instead of a
    statement per row); elsewhere (the SQLite demo) by executemany. Columns missing from a row are NULL, or their
    server default where no row has them."""
    if not rows:
        return
    columns = sorted({key for row in rows for key in row})
    if not is_postgresql(s):
        s.execute(insert(table), [{c: row.get(c) for c in columns} for row in rows])
        return
    converters = [(c, _copy_converter(table.c[c].type)) for c in columns]
    cursor = s.connection().connection.dbapi_connection.cursor()  # the session's own connection and transaction
    with cursor.copy(f'COPY "{table.name}" ({", ".join(columns)}) FROM STDIN') as copy:
        for row in rows:
            copy.write_row([row.get(c) if convert is None else convert(row.get(c)) for c, convert in converters])


def staged(s: Session, table: Table, rows: Sequence[Mapping[str, Any]]) -> Select[Any] | None:
    """On PostgreSQL: the rows COPYed into a temporary table with the same columns (per connection, holding
    only these rows), as a SELECT for an INSERT ... SELECT ... ON CONFLICT; the upsert of thousands of rows is
    then one statement. None elsewhere: the caller executes its statement with the rows."""
    if not is_postgresql(s) or not rows:
        return None
    columns = sorted({key for row in rows for key in row})
    name = f"{table.name}_staged_{zlib.crc32(','.join(columns).encode()):08x}"
    s.execute(text(f'CREATE TEMPORARY TABLE IF NOT EXISTS "{name}" ON COMMIT DELETE ROWS AS '
                   f'SELECT {", ".join(columns)} FROM "{table.name}" WITH NO DATA'))
    s.execute(text(f'DELETE FROM "{name}"'))  # an earlier batch of the same transaction
    staging = Table(name, MetaData(), *(Column(c, table.c[c].type) for c in columns))
    insert_many(s, staging, rows)
    return select(*staging.c)


def update_rows(s: Session, table: Table, rows: Sequence[Mapping[str, Any]], **same: Any) -> None:
    """UPDATE many rows by id: each row's own values (every row has the same keys, `id` among them) and values
    the same for all (`same`). On PostgreSQL one statement joining one array per column; elsewhere executemany."""
    if not rows:
        return
    keys = [k for k in rows[0] if k != "id"]
    if is_postgresql(s):
        arrays = [bindparam(None, [row[k] for row in rows], type_=ARRAY(table.c[k].type)) for k in ("id", *keys)]
        values = func.unnest(*arrays).table_valued("id", *keys).render_derived()
        s.execute(update(table).where(table.c.id == values.c.id).values(
            **{k: values.c[k] for k in keys}, **same))
        return
    s.execute(
        update(table).where(table.c.id == bindparam("row_id")).values(
            **{k: bindparam(f"row_{k}") for k in keys}, **same),
        [{"row_id": row["id"], **{f"row_{k}": row[k] for k in keys}} for row in rows],
    )


def one_of(s: Session, column: ColumnElement[Any], values: Sequence[Any]) -> ColumnElement[bool]:
    """`column IN (values)`. On PostgreSQL as `column = ANY(array)`: one parameter however many values, where an
    IN list of hundreds of placeholders costs the driver more to prepare than the query costs the server."""
    if is_postgresql(s):
        return column == any_(bindparam(None, list(values), type_=ARRAY(column.type)))
    return column.in_(values)


def _copy_converter(column_type: Any) -> Callable[[Any], Any] | None:
    """What a value of this column needs before COPY (the conversion SQLAlchemy would have made), or None."""
    if isinstance(column_type, JSON):
        return lambda v: None if v is None else Json(v)
    if isinstance(column_type, Enum):
        return lambda v: v.value if isinstance(v, enum.Enum) else v
    if isinstance(column_type, TypeDecorator) and isinstance(column_type.impl_instance, DateTime):
        return lambda v: column_type.process_bind_param(v, None)  # UtcDateTime refuses naive datetimes
    return None


def is_unique_violation(exc: IntegrityError) -> bool:
    """True when an insert lost a race on a unique constraint.

    Callers treat that as "someone else already did it" (a second beat, a redelivered message), which is why it
    is safe to swallow only this kind of IntegrityError.
    """
    code = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
    if code is not None:
        return code == "23505"
    return "UNIQUE constraint failed" in str(exc.orig)
