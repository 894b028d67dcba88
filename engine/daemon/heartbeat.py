"""The heartbeat and the reaper: say this worker lives; retake the work of workers that died.

A worker is dead after about three missed heartbeats. Sooner only when its pid means something
here: same hostname AND same boot id (kernel boot + pid namespace), and that pid is gone (a
restart after kill -9 recovers without waiting). Containers that share a hostname (k8s
hostNetwork, a fixed `hostname:` with replicas) all run as pid 1 or 7 in pid namespaces of
their own: their boot ids differ, so they never reap each other's live work.
"""

from __future__ import annotations

import asyncio
import functools
import os
import secrets
import socket
from datetime import timedelta
from pathlib import Path

import structlog

from engine.daemon.stopping import wait_or_stop
from engine.services.ports import Clock
from engine.services.recover import Recovery
from engine.store.db import UNAVAILABLE, failure
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


@functools.cache
def boot_id() -> str:
    """Which pid namespace this process lives in: the kernel's boot id and the namespace's
    inode. Where /proc does not say, a random token: our pid then means nothing to others
    (they wait for a stale heartbeat), which is slower but never wrong."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        return f"{boot}/{os.readlink('/proc/self/ns/pid')}"
    except OSError:
        return f"random:{secrets.token_hex(8)}"


def dead_here(workers: list[WorkerRow], me: str) -> list[str]:
    """Workers in our very pid namespace whose process is gone (or is us, reborn)."""
    host, pid, boot = socket.gethostname(), os.getpid(), boot_id()
    return [w.name for w in workers if w.name != me and w.host == host and w.boot_id == boot
            and (w.pid == pid or not pid_alive(w.pid))]


class Heartbeat:
    def __init__(self, workers: WorkerStore, recovery: Recovery, clock: Clock, name: str,
                 interval: float, lease: timedelta) -> None:
        self.workers, self.recovery, self.clock = workers, recovery, clock
        self.name, self.interval, self.lease = name, interval, lease

    async def register(self) -> None:
        await asyncio.to_thread(self.workers.register, self.name, socket.gethostname(),
                                os.getpid(), self.clock.now(), boot_id())

    async def beat_and_reap(self) -> None:
        """One beat, then one reap (`run --once`)."""
        await asyncio.to_thread(self.workers.heartbeat, self.name, self.clock.now(), self.lease)
        await self._reap()

    async def _reap(self) -> None:
        rows = await asyncio.to_thread(self.workers.workers)
        await self.recovery.reap(dead_here(rows, self.name))

    async def run(self, stop: asyncio.Event) -> None:
        """Beat every interval until `stop`, reaping alongside: a reap that waits on a slow
        IMAP server (looking for in-doubt touches in a Sent folder) must not hold back the
        beats, or other workers would take this one for dead. A beat or reap the database
        refuses is logged and tried again (our leases last several intervals)."""
        reaping: asyncio.Task[None] | None = None
        try:
            while not stop.is_set():
                if reaping is not None and reaping.done():
                    _raise_unless_unavailable(reaping, "reap_failed_database")
                    reaping = None
                try:
                    await asyncio.to_thread(self.workers.heartbeat, self.name,
                                            self.clock.now(), self.lease)
                except UNAVAILABLE as exc:
                    _log_unavailable("heartbeat_failed_database", exc)
                if reaping is None:
                    reaping = asyncio.create_task(self._reap(), name="reap")
                await wait_or_stop(stop, self.interval)
        finally:
            if reaping is not None:
                await asyncio.wait({reaping})
                _raise_unless_unavailable(reaping, "reap_failed_database")

    async def unregister(self) -> None:
        released = await asyncio.to_thread(self.workers.release, self.name, self.clock.now())
        if released:
            log.info("claims_released_on_stop", count=released)


def _log_unavailable(event: str, exc: BaseException) -> None:
    log.warning(event, error=failure(exc))


def _raise_unless_unavailable(task: asyncio.Task[None], event: str) -> None:
    """A finished reap: a database failure is logged (the next beat reaps again); anything
    else stops the heartbeat task, and with it the daemon, as a bug should."""
    exc = None if task.cancelled() else task.exception()
    if isinstance(exc, UNAVAILABLE):
        _log_unavailable(event, exc)
    elif exc is not None:
        raise exc
