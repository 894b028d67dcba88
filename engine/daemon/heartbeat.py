"""The heartbeat and the reaper: say this worker lives; retake the work of workers that died.

A worker on this host whose pid is gone is dead at once (a restart after kill -9 recovers
without waiting); elsewhere a worker is dead after about three missed heartbeats.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from datetime import timedelta

import structlog

from engine.services.ports import Clock
from engine.services.recover import Recovery
from engine.store.workers import WorkerRow, WorkerStore

log = structlog.get_logger("nurture.heartbeat")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    return True


def dead_here(workers: list[WorkerRow], me: str) -> list[str]:
    """Workers registered from this host whose process is gone (or is us, reborn)."""
    host, pid = socket.gethostname(), os.getpid()
    return [w.name for w in workers if w.name != me and w.host == host
            and (w.pid == pid or not pid_alive(w.pid))]


class Heartbeat:
    def __init__(self, workers: WorkerStore, recovery: Recovery, clock: Clock, name: str,
                 interval: float, lease: timedelta) -> None:
        self.workers, self.recovery, self.clock = workers, recovery, clock
        self.name, self.interval, self.lease = name, interval, lease

    async def register(self) -> None:
        await asyncio.to_thread(self.workers.register, self.name, socket.gethostname(),
                                os.getpid(), self.clock.now())

    async def beat_and_reap(self) -> None:
        await asyncio.to_thread(self.workers.heartbeat, self.name, self.clock.now(), self.lease)
        rows = await asyncio.to_thread(self.workers.workers)
        await self.recovery.reap(dead_here(rows, self.name))

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.beat_and_reap()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.interval)

    async def unregister(self) -> None:
        released = await asyncio.to_thread(self.workers.release, self.name, self.clock.now())
        if released:
            log.info("claims_released_on_stop", count=released)
