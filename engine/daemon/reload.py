"""Sequence reload without a restart: the daemon task `reload` (SIGHUP, and with
`nurture run --reload-sequences` a poll of sequences/ and templates/ for changed files).

A reload validates every file again and swaps the whole catalog between two send passes.
A file that fails validation is logged (`sequence_problem`, file:line) and its sequence is
not sent until the file is fixed; its enrollments stay due and go out after the fixing
reload. The other sequences run on. Nothing a file contains can stop the daemon.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from pathlib import Path

import structlog

from engine.app import App
from engine.authoring.catalog import fingerprint
from engine.authoring.live import Change, LiveCatalog
from engine.daemon.dispatcher import Dispatcher
from engine.daemon.runner import Daemon

log = structlog.get_logger("nurture.reload")
POLL_SECONDS = 2.0  # --reload-sequences: how often the two directories are looked at


class Reloader:
    def __init__(self, app: App, dispatcher: Dispatcher, watch: bool = False,
                 poll: float = POLL_SECONDS) -> None:
        self.app, self.dispatcher, self.watch, self.poll = app, dispatcher, watch, poll
        self.catalog: LiveCatalog = app.catalog
        self.reloads = 0
        self._asked = asyncio.Event()

    @property
    def dirs(self) -> tuple[Path, Path]:
        return self.app.settings.sequences_dir, self.app.settings.templates_dir

    def ask(self) -> None:
        """Reload soon (the SIGHUP handler; also for tests)."""
        self._asked.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Until `stop`: reload on SIGHUP, and on changed files when watching."""
        loop = asyncio.get_running_loop()
        try:
            loop.add_signal_handler(signal.SIGHUP, self._on_hup)
        except (RuntimeError, ValueError):  # a loop outside the main thread: no signals
            log.warning("reload_signal_unavailable", hint="SIGHUP will not reload")
        try:
            seen = self.catalog.current.files_seen  # not a look now: it may be after an edit
            await self._report_unavailable()
            while await self._next(stop):
                asked = self._asked.is_set()
                self._asked.clear()
                if self.watch:
                    now = await asyncio.to_thread(fingerprint, *self.dirs)
                    if not asked and now == seen:
                        continue
                    seen = now  # taken before loading: a write during the load shows next time
                await self.reload("asked" if asked else "files changed")
        finally:
            loop.remove_signal_handler(signal.SIGHUP)
            with contextlib.suppress(ValueError):  # not the main thread: nothing to restore
                signal.signal(signal.SIGHUP, signal.SIG_IGN)  # a late HUP must not kill us

    def _on_hup(self) -> None:
        log.info("reload_requested", signal="SIGHUP")
        self.ask()

    async def _next(self, stop: asyncio.Event) -> bool:
        """Wait for a request, a stop, or (watching) the next poll; False when stopping."""
        waits = {asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self._asked.wait())}
        try:
            await asyncio.wait(waits, timeout=self.poll if self.watch else None,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()
        return not stop.is_set()

    async def reload(self, reason: str = "asked") -> Change | None:
        """Validate every file again and put the result in use between two passes."""
        try:
            new = await asyncio.to_thread(self.catalog.load)
        except Exception as exc:  # noqa: BLE001 - a reload must never stop the daemon
            log.error("sequences_reload_failed", reason=reason, error=repr(exc),
                      hint="the sequences loaded before keep running")
            return None
        async with self.dispatcher.between_passes:
            change = self.catalog.swap(new)
        self.reloads += 1
        log.info("sequences_reloaded", reason=reason, loaded=sorted(new.sequences),
                 added=change.added, removed=change.removed, changed=change.changed,
                 broken=change.broken)
        for problem in change.problems:
            log.error("sequence_problem", problem=str(problem))
        await self._report_unavailable()
        self.dispatcher.wake()  # a fixed sequence's due touches go out now
        return change

    async def _report_unavailable(self) -> None:
        """Once per load: sequences with enrollments waiting that are not loaded."""
        try:
            live = await asyncio.to_thread(self.app.store.reports.live_by_sequence)
        except Exception as exc:  # noqa: BLE001 - only a report; the database may be away
            log.warning("sequence_check_failed", error=repr(exc))
            return
        for name, waiting, why in self.catalog.current.unavailable(live):
            log.warning("sequence_unavailable", sequence=name, enrollments_waiting=waiting,
                        reason=why, hint="they stay due and are sent once the sequence loads; "
                                         "stop them with the API if it is gone for good")


def add_reload(daemon: Daemon, watch: bool = False, poll: float = POLL_SECONDS) -> Reloader:
    """Add the `reload` task to the daemon (SIGHUP; `watch` polls the directories too)."""
    reloader = Reloader(daemon.app, daemon.dispatcher, watch, poll)
    daemon.add("reload", reloader.run)
    return reloader

