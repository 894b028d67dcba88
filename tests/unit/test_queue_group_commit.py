"""SQLite group commit: concurrent writers share a transaction; each still gets all-or-nothing."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, insert, select
from sqlalchemy.exc import OperationalError

from engine.store.db import Database
from engine.store.tables import KeyValue

KV = KeyValue.__table__


@pytest.fixture
def db(tmp_path: Path) -> Database:
    d = Database(f"sqlite:///{tmp_path / 'g.db'}")
    d.upgrade()
    return d


def count(db: Database) -> int:
    with db.read() as conn:
        return int(conn.execute(select(func.count()).select_from(KV)).scalar() or 0)


def test_every_concurrent_write_is_durable_when_its_block_returns(db: Database) -> None:
    """Eight threads, fifty writes each: all rows are there, none lost to a shared commit."""
    seen_after_return: list[bool] = []

    def writer(n: int) -> None:
        for i in range(50):
            key = f"{n}-{i}"
            with db.write() as conn:
                conn.execute(insert(KV).values(key=key, value="v"))
            with db.read() as conn:  # another connection sees it at once
                seen_after_return.append(
                    conn.execute(select(KV.c.key).where(KV.c.key == key)).first() is not None)
    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert count(db) == 400 and all(seen_after_return)


def test_a_failing_writer_rolls_back_only_its_own_writes(db: Database) -> None:
    """A block that raises leaves no trace; the writers around it are kept."""
    barrier = threading.Barrier(3)
    errors: list[BaseException] = []

    def good(key: str) -> None:
        barrier.wait()
        with db.write() as conn:
            conn.execute(insert(KV).values(key=key, value="v"))

    def bad() -> None:
        barrier.wait()
        try:
            with db.write() as conn:
                conn.execute(insert(KV).values(key="bad", value="v"))
                raise RuntimeError("boom")
        except RuntimeError as exc:
            errors.append(exc)
    threads = [threading.Thread(target=good, args=("a",)), threading.Thread(target=bad),
               threading.Thread(target=good, args=("b",))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    with db.read() as conn:
        keys = set(conn.execute(select(KV.c.key)).scalars())
    assert keys == {"a", "b"} and len(errors) == 1


def test_a_constraint_violation_surfaces_to_its_writer(db: Database) -> None:
    """A duplicate key raises in the block that wrote it, and the database stays usable."""
    from sqlalchemy.exc import IntegrityError

    with db.write() as conn:
        conn.execute(insert(KV).values(key="k", value="v"))
    with pytest.raises(IntegrityError), db.write() as conn:
        conn.execute(insert(KV).values(key="k", value="again"))
    with db.write() as conn:
        conn.execute(insert(KV).values(key="k2", value="v"))
    assert count(db) == 2


def test_an_error_that_undoes_the_whole_transaction_fails_every_writer_in_it(
        db: Database) -> None:
    """Some SQLite errors (disk full, I/O error) roll back the whole shared transaction, not
    just the failing writer's savepoint: A, whose block returned and who waits for the
    shared commit, must learn its writes are gone (it used to return as if durable, and a
    writer after it committed alone); later writers work again."""
    group = db._group
    assert group is not None
    a_wrote, results = threading.Event(), {}

    def a() -> None:
        try:
            with db.write() as conn:
                pages = conn.exec_driver_sql("PRAGMA page_count").scalar()
                conn.exec_driver_sql(f"PRAGMA max_page_count={pages + 3}")  # a full disk
                conn.execute(insert(KV).values(key="a", value="v"))
                a_wrote.set()
                while group._arriving == 0:  # B queues behind A: A waits for B's commit
                    threading.Event().wait(0.005)
            results["a"] = "returned"
        except Exception as exc:  # noqa: BLE001 - what A learns is the point
            results["a"] = type(exc).__name__

    def b() -> None:
        a_wrote.wait()
        try:
            with db.write() as conn:
                conn.exec_driver_sql(f"INSERT INTO {KV.name} (key, value) "
                                     "VALUES ('b', hex(zeroblob(100000)))")
            results["b"] = "returned"
        except Exception as exc:  # noqa: BLE001
            results["b"] = type(exc).__name__

    threads = [threading.Thread(target=a), threading.Thread(target=b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert not any(t.is_alive() for t in threads), "a writer is still waiting"
    assert results == {"a": "OperationalError", "b": "OperationalError"}, results
    assert count(db) == 0
    with db.write() as conn:  # a fresh connection: no max_page_count, nothing half-open
        conn.execute(insert(KV).values(key="c", value="v"))
    assert count(db) == 1


def test_a_batch_item_that_undoes_the_whole_transaction_fails_the_batch(db: Database) -> None:
    """send_writes' batch, one savepoint per item: item 2 fills the disk, and SQLite undoes
    the whole transaction. Item 1 must not be told its write was saved (a begin told so went
    to SMTP while the touch stayed `claimed`, to be sent again later): the batch raises."""
    from engine.store.queue import QueueStore

    def work(conn: Any, item: str) -> str:
        if item == "first":
            pages = conn.exec_driver_sql("PRAGMA page_count").scalar()
            conn.exec_driver_sql(f"PRAGMA max_page_count={pages + 3}")
            conn.execute(insert(KV).values(key="first", value="v"))
        else:
            conn.exec_driver_sql(f"INSERT INTO {KV.name} (key, value) "
                                 "VALUES ('second', hex(zeroblob(100000)))")
        return item

    with pytest.raises(OperationalError):
        QueueStore(db)._each_in_one(["first", "second"], work)
    assert count(db) == 0
    with db.write() as conn:
        conn.execute(insert(KV).values(key="after", value="v"))
    assert count(db) == 1
