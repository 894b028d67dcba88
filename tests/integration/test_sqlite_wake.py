"""SQLite has no NOTIFY: the daemon watches the database file so that another process's
enrollment wakes its dispatcher at once (daemon/wake.py: watch_sqlite)."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from engine.daemon.wake import _stamp, watch_sqlite
from engine.store.store import Store


def _store(tmp_path: Path) -> Path:
    path = tmp_path / "nurture.db"
    store = Store(f"sqlite:///{path}")
    store.db.upgrade()
    store.close()
    return path


def _commit_elsewhere(path: Path) -> None:
    """A write by another connection, as `nurture enroll` in another process makes."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("INSERT INTO suppression (email, reason, source, created_at) "
                     "VALUES ('x@example.com', 'manual', '', '2026-01-01 00:00:00.000000')")
    finally:
        conn.close()


def test_a_commit_by_another_connection_wakes_the_dispatcher(tmp_path: Path) -> None:
    """The watcher calls wake after a commit it did not make; it returns when stopped."""
    path = _store(tmp_path)

    async def go() -> None:
        woken, stop = asyncio.Event(), asyncio.Event()
        task = asyncio.create_task(watch_sqlite(path, woken.set, stop))
        await asyncio.sleep(0)  # the watcher has taken its first look at the files
        await asyncio.to_thread(_commit_elsewhere, path)
        await asyncio.wait_for(woken.wait(), timeout=10)
        stop.set()
        await asyncio.wait_for(task, timeout=10)
    asyncio.run(go())


def test_reads_leave_the_watched_stamp_alone(tmp_path: Path) -> None:
    """What the watcher compares (size and mtime of the file and its WAL) moves with a commit
    and not with reads: an idle daemon is not woken by readers (status, the web pages)."""
    path = _store(tmp_path)
    before = _stamp(path)
    for _ in range(3):
        conn = sqlite3.connect(path)
        conn.execute("SELECT count(*) FROM lead").fetchone()
        conn.close()
    assert _stamp(path) == before
    _commit_elsewhere(path)
    assert _stamp(path) != before
