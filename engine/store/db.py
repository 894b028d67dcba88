"""The database: engine creation (SQLite WAL / PostgreSQL), transactions, migrations.

SQLite is the default and runs one writer at a time: write transactions start with
`BEGIN IMMEDIATE` (a deferred BEGIN that later upgrades to a write can fail with SQLITE_BUSY
despite busy_timeout) and, inside one process, share one transaction and its fsync (group
commit) rather than queue on SQLite's sleeping busy handler. PostgreSQL is used through
psycopg 3 and claims with SKIP LOCKED.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.pool import NullPool

from engine.errors import ConfigError, DatabaseError
from engine.store import tables  # noqa: F401 - registers the tables on the metadata
from engine.store.group_commit import GroupCommit

MIGRATIONS = Path(__file__).parent / "migrations"
SCHEMA_HEAD = "0006"  # bump with every new revision (reading the scripts costs 0.3 s a command)
SQLITE_BUSY_MS = 10_000
# The database failed or is away (a restart, a failover, a full disk, a lost connection):
# what a long-running task waits out and tries again. Not an IntegrityError or a
# ProgrammingError: those are bugs, and a bug stops the daemon loudly (task_died).
UNAVAILABLE = (sa_exc.OperationalError, sa_exc.InterfaceError, DatabaseError)


def normalise_url(url: str) -> str:
    """`postgresql://` and `postgres://` mean psycopg 3 here."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url.removeprefix(prefix)
    return url


class Database:
    """One database, shared by every store module; thread-safe."""

    def __init__(self, url: str) -> None:
        self.url = normalise_url(url)
        self.is_sqlite = self.url.startswith("sqlite")
        self.is_postgres = self.url.startswith("postgresql")
        if not (self.is_sqlite or self.is_postgres):
            raise ConfigError(
                f"database_url '{url}' is not supported; use sqlite:///path/to/nurture.db "
                "or postgresql://user@host/dbname"
            )
        self.sqlite_path = _sqlite_path(self.url) if self.is_sqlite else None
        self.engine = _sqlite_engine(self.url) if self.is_sqlite else _pg_engine(self.url)
        # SQLite: one writer; concurrent writers share a transaction and its fsync.
        self._group = GroupCommit(self.engine) if self.is_sqlite else None

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A write transaction: durable when the block exits; rolled back on error."""
        if self._group is None:
            with self.engine.begin() as conn:
                yield conn
            return
        with self._group.write() as conn:
            yield conn

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read-only transaction (deferred BEGIN on SQLite: readers never block writers)."""
        with self.engine.connect() as conn:
            conn = conn.execution_options(nurture_read=True)
            with conn.begin():
                yield conn

    def upgrade(self, revision: str = "head") -> None:
        """Bring the schema to `revision` with alembic (`nurture db upgrade`)."""
        from alembic import command

        if self.sqlite_path is not None:  # only creating the database makes its folder
            self.sqlite_path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as conn:
            try:
                command.upgrade(_alembic_config(conn), revision)
            except sa_exc.DBAPIError as exc:
                raise DatabaseError(f"upgrading the database {self.safe_url} failed: "
                                    f"{one_line(exc)}") from exc
            conn.commit()

    def current_revision(self) -> str | None:
        """The schema revision the database is at (alembic's version table), None if empty."""
        with self._connect() as conn:
            if not inspect(conn).has_table("alembic_version"):
                return None
            return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()

    @contextmanager
    def _connect(self) -> Iterator[Connection]:
        """A connection, or one clear DatabaseError if the database cannot be opened: server
        down, wrong credentials, or (SQLite) a file that is not a database."""
        try:
            conn = self.engine.connect()
        except sa_exc.DBAPIError as exc:
            raise DatabaseError(f"cannot open the database {self.safe_url}: "
                                f"{one_line(exc)}") from exc
        with conn:
            yield conn

    @staticmethod
    def head_revision() -> str:
        """The newest revision; a test checks it against alembic's own view of the scripts."""
        return SCHEMA_HEAD

    def check_schema(self) -> None:
        """Raise a clear error unless the schema is at the newest revision."""
        if self.sqlite_path is not None and not self.sqlite_path.is_file():
            # Connecting would create an empty file (and a read-only command must not).
            raise DatabaseError(f"no database at {self.sqlite_path}; run `nurture db upgrade`")
        current = self.current_revision()
        if current != self.head_revision():
            raise DatabaseError(
                f"the database {self.safe_url} is at schema {current or 'empty'}, "
                f"nurture needs {self.head_revision()}: run `nurture db upgrade`"
            )

    @property
    def safe_url(self) -> str:
        """The URL without its password, for messages."""
        return self.engine.url.render_as_string(hide_password=True)

    def dispose(self) -> None:
        if self._group is not None:
            self._group.close()
        self.engine.dispose()


def failure(exc: BaseException) -> str:
    """`OperationalError: server closed the connection ...`, for a log line."""
    return f"{type(exc).__name__}: {one_line(exc)}"


def one_line(exc: BaseException) -> str:
    """A database error's message on one line: the driver's own for a DBAPIError (libpq adds
    an indented hint line, SQLAlchemy the statement and a link)."""
    return " ".join(str(getattr(exc, "orig", None) or exc).split())


def _alembic_config(conn: Connection) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = conn
    return cfg


def _sqlite_path(url: str) -> Path | None:
    """The database file of a sqlite URL; None for an in-memory database."""
    path = url.split(":///", 1)[-1].split("?", 1)[0] if ":///" in url else ""
    return Path(path) if path and path != ":memory:" else None


def _sqlite_engine(url: str) -> Engine:
    path = url.split(":///", 1)[-1]
    engine = create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_MS / 1000},
        # One file, few threads: a fresh connection per use keeps WAL checkpoints moving
        # and avoids sharing a connection between threads.
        poolclass=NullPool if path == ":memory:" else None,
        # Every use ends in an explicit COMMIT or ROLLBACK: no extra ROLLBACK on check-in.
        pool_reset_on_return=None,
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy's BEGIN below be the only one (pysqlite would issue its own).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")  # a committed `sent` survives power loss
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_MS}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        read = conn.get_execution_options().get("nurture_read", False)
        conn.exec_driver_sql("BEGIN" if read else "BEGIN IMMEDIATE")

    return engine


def _pg_engine(url: str) -> Engine:
    return create_engine(url, pool_size=5, max_overflow=10, pool_pre_ping=True)


def ping(db: Database) -> None:
    """Raise DatabaseError unless the database answers."""
    try:
        with db.read() as conn:
            conn.execute(text("SELECT 1"))
    except sa_exc.DBAPIError as exc:  # unreachable, or a file that is not a database
        raise DatabaseError(f"cannot reach the database {db.safe_url}: {one_line(exc)}") from exc
