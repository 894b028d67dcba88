"""Wake-ups from other processes: PostgreSQL LISTEN (NOTIFY nurture_due), and on SQLite a
watch on the database file, so another process's enrollment wakes the dispatcher at once."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import psycopg
import structlog

from engine.daemon.stopping import wait_or_stop

log = structlog.get_logger("nurture.wake")
CHANNEL = "nurture_due"
RECONNECT_SECONDS = 2.0
WATCH_SECONDS = 0.05  # SQLite: how often the files are looked at (two stat calls, no query)


async def listen(url: str, wake: Callable[[], None], stop: asyncio.Event) -> None:
    """Until `stop`: call `wake` on every NOTIFY; reconnect when the connection drops."""
    dsn = url.replace("postgresql+psycopg://", "postgresql://", 1)
    while not stop.is_set():
        try:
            async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
                await conn.execute(f"LISTEN {CHANNEL}")
                wake()  # anything enrolled while we were not listening
                while not stop.is_set():
                    async for _ in conn.notifies(timeout=1.0, stop_after=1):
                        wake()
        except psycopg.OperationalError as exc:
            log.warning("listen_reconnect", error=str(exc))
            await wait_or_stop(stop, RECONNECT_SECONDS)


async def watch_sqlite(path: Path, wake: Callable[[], None], stop: asyncio.Event) -> None:
    """Until `stop`: call `wake` when the SQLite database changes on disk.

    SQLite has no NOTIFY. Every commit writes to the write-ahead log, so a change in the
    -wal file's size or mtime means someone committed: a `nurture enroll` or `import` in
    another process reaches this daemon within WATCH_SECONDS instead of the 1 s poll
    (measured by bench/first_touch.py). Our own commits wake us too; that costs one pass
    that finds nothing, and the poll stays as the safety net.
    """
    last = _stamp(path)
    while not stop.is_set():
        await wait_or_stop(stop, WATCH_SECONDS)
        now = _stamp(path)
        if now != last:
            last = now
            wake()


def _stamp(path: Path) -> tuple[int, ...]:
    stamp: list[int] = []
    for file in (path, path.with_name(path.name + "-wal")):
        try:
            st = file.stat()
        except OSError:  # no WAL yet, or just checkpointed away
            stamp += [0, 0]
        else:
            stamp += [st.st_mtime_ns, st.st_size]
    return tuple(stamp)
