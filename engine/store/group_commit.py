"""Group commit for SQLite: writers that arrive together share one transaction and one fsync.

SQLite has one writer at a time and, with synchronous=FULL, every COMMIT waits for the disk.
Here each writer runs its body in a SAVEPOINT of a shared transaction, one body at a time.
The last writer of a burst (no one queued behind it) commits for all; the others wait for
that commit, so nobody returns before its writes are durable. A body that raises rolls back
its own savepoint only; a failed COMMIT fails every writer of that group, and so does an
error after which SQLite has undone the whole transaction (disk full, I/O error).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, Engine, NestedTransaction, RootTransaction

from engine.errors import DatabaseError

LOST = ("SQLite undid the whole transaction (a full disk, an I/O error): none of its writes "
        "were saved")


def transaction_lost(conn: Connection) -> bool:
    """SQLite ends the transaction itself on some errors (disk full, I/O error, out of
    memory), not just the failing statement: the connection is then in none."""
    return not getattr(conn.connection.driver_connection, "in_transaction", True)


class GroupCommit:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._turn = threading.Condition()  # held while a body runs; waited on for commits
        self._queue = threading.Lock()  # guards `_arriving` (taken without `_turn`)
        self._arriving = 0  # writers that want `_turn` and do not have it yet
        self._conn: Connection | None = None
        self._txn: RootTransaction | None = None
        self._epoch = 0  # number of group commits so far
        self._failures: dict[int, BaseException] = {}

    @contextmanager
    def write(self) -> Iterator[Connection]:
        with self._queue:
            self._arriving += 1
        with self._turn:
            with self._queue:
                self._arriving -= 1
            alone = self._txn is None  # no one's writes wait in the open transaction
            conn = self._open()
            # Alone, the transaction is ours: no savepoint needed (two statements saved).
            savepoint = None if alone else conn.begin_nested()
            try:
                yield conn
                if savepoint is not None:
                    savepoint.commit()
            except BaseException as exc:
                if savepoint is None:
                    self._rollback()
                elif not self._undo(savepoint):
                    self._fail_group(exc)
                else:
                    self._commit_if_last()
                raise
            if transaction_lost(conn):  # a body caught the error that undid it all
                lost = DatabaseError(LOST)
                self._fail_group(lost)
                raise lost
            self._commit_if_last(wait=True)

    def _undo(self, savepoint: NestedTransaction) -> bool:
        """Roll back one writer's savepoint; False when the shared transaction itself is
        gone: SQLite undoes the whole transaction on some errors (disk full, I/O error,
        out of memory), and with it the writes of those waiting for the group's commit."""
        try:
            if self._conn is None or transaction_lost(self._conn):
                return False
            savepoint.rollback()
            return True
        except Exception:  # noqa: BLE001 - no savepoint to go back to: the group is lost
            return False

    def _fail_group(self, exc: BaseException) -> None:
        """Every writer of the open transaction learns it failed; the next starts afresh."""
        self._txn = None
        self._failures[self._epoch] = exc
        self._discard()
        self._epoch += 1
        self._turn.notify_all()

    def _open(self) -> Connection:
        if self._conn is None:
            self._conn = self.engine.connect()
        if self._txn is None:
            self._txn = self._conn.begin()  # BEGIN IMMEDIATE (see db.py)
        return self._conn

    def _rollback(self) -> None:
        txn, self._txn = self._txn, None
        try:
            if txn is not None:
                txn.rollback()
        except BaseException:
            self._discard()

    def _commit_if_last(self, wait: bool = False) -> None:
        """Commit now if nobody is queued; otherwise let the last one commit for us."""
        epoch = self._epoch
        with self._queue:
            others = self._arriving > 0
        if not others:
            self._commit()
        elif wait:
            while self._epoch == epoch:
                self._turn.wait()
        error = self._failures.get(epoch) if wait else None
        if error is not None:
            raise error

    def _commit(self) -> None:
        txn, self._txn = self._txn, None
        try:
            if txn is not None:
                txn.commit()
        except BaseException as exc:  # every writer of this group learns it failed
            self._failures[self._epoch] = exc
            self._discard()
        finally:
            self._epoch += 1
            self._turn.notify_all()

    def _discard(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.invalidate()

    def close(self) -> None:
        with self._turn:
            if self._txn is not None:
                self._txn.rollback()
                self._txn = None
            if self._conn is not None:
                self._conn.close()
                self._conn = None
