"""SQLite group commit: concurrent writers share a transaction; each still gets all-or-nothing."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlalchemy import func, insert, select

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
