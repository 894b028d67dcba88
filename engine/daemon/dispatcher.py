"""The dispatcher: runs send passes, sleeping until the next due time or until woken.

Woken at once by an enrollment in this process (`wake`, thread-safe), by a PostgreSQL
NOTIFY from another process (daemon/wake.py), and otherwise by a short poll so a CLI
enrollment on SQLite is picked up within about a second.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import datetime

import structlog

from engine.daemon.stopping import wait_or_stop
from engine.services.ports import Clock
from engine.services.send_due import PassReport, SendDue
from engine.store.db import UNAVAILABLE, failure

log = structlog.get_logger("nurture.dispatcher")
MIN_SLEEP = 0.05  # after an empty pass whose due work another worker holds: no hot loop
OUTAGE_WAITS = (0.5, 1, 2, 5, 10, 30)  # seconds before the next pass while the database fails


class Dispatcher:
    def __init__(self, send: SendDue, clock: Clock, idle_poll: float) -> None:
        self.send, self.clock, self.idle_poll = send, clock, idle_poll
        self.totals: Counter[str] = Counter()
        self._woken = asyncio.Event()
        # Held for the whole of each pass: a sequence reload swaps the catalog only between
        # passes, so one pass claims, renders and records with one version of everything.
        self.between_passes = asyncio.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        # Set while passes fail because the database does (None when the last pass worked).
        self.failing_since: datetime | None = None

    def wake(self) -> None:
        """Look for due work now. Safe to call from any thread."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            if asyncio.get_running_loop() is loop:
                self._woken.set()
                return
        except RuntimeError:
            pass
        loop.call_soon_threadsafe(self._woken.set)

    async def run(self, stop: asyncio.Event) -> None:
        """Until `stop`: a pass, then sleep until due, woken or polled. In-flight sends finish."""
        self._loop = asyncio.get_running_loop()
        watch = asyncio.create_task(self._stop_sending_on(stop), name="stop-sending")
        try:
            failures = 0
            while not stop.is_set():
                self._woken.clear()
                try:
                    report = await self._pass()
                except UNAVAILABLE as exc:
                    # Wait it out: the pass's recorded-but-unwritten finishes stay in memory
                    # and are written by the first pass that works (send_due._leftovers).
                    wait = OUTAGE_WAITS[min(failures, len(OUTAGE_WAITS) - 1)]
                    failures += 1
                    self.failing_since = self.failing_since or self.clock.now()
                    log.warning("pass_failed_database", retry_in=wait,
                                error=failure(exc),
                                failing_since=self.failing_since.isoformat())
                    await wait_or_stop(stop, wait)
                    continue
                if failures:
                    log.info("pass_database_back", failed_passes=failures)
                failures, self.failing_since = 0, None
                if report.more:
                    continue
                await self._sleep(report, stop)
        finally:
            watch.cancel()
            self.send.stopping = True

    async def _stop_sending_on(self, stop: asyncio.Event) -> None:
        """The moment a stop is asked for, even mid-pass: no touch is begun after it (the
        pass hands its unstarted claims back), so shutdown sends only what was begun
        (send_due.in_flight: one SMTP transaction per connection)."""
        await stop.wait()
        self.send.stopping = True

    async def run_once(self) -> Counter[str]:
        """Passes until nothing more is due now (`nurture run --once`)."""
        self._loop = asyncio.get_running_loop()
        while True:
            report = await self._pass()
            if report.claimed == 0:
                return self.totals

    async def _pass(self) -> PassReport:
        async with self.between_passes:
            report = await self.send.run_pass()
        self.totals.update(report.counts)
        self.totals["claimed"] += report.claimed
        return report

    async def _sleep(self, report: PassReport, stop: asyncio.Event) -> None:
        timeout = self.idle_poll
        if report.wake_at is not None:
            timeout = min(timeout, _seconds_until(report.wake_at, self.clock.now()))
        if report.claimed == 0:
            timeout = max(timeout, MIN_SLEEP)
        if timeout <= 0:
            return
        woken = asyncio.ensure_future(self._woken.wait())
        stopped = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({woken, stopped}, timeout=timeout,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            woken.cancel()
            stopped.cancel()


def _seconds_until(at: datetime, now: datetime) -> float:
    return (at - now).total_seconds()
