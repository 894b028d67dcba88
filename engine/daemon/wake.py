"""PostgreSQL LISTEN: another process's enrollment (NOTIFY nurture_due) wakes the dispatcher."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import psycopg
import structlog

log = structlog.get_logger("nurture.wake")
CHANNEL = "nurture_due"
RECONNECT_SECONDS = 2.0


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
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), RECONNECT_SECONDS)
