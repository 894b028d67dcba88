"""The reply watchers inside the daemon: one `watch:<mailbox>` task per mailbox with IMAP.

Each task runs a MailboxWatcher in its own thread (IMAPClient is not thread-safe); the thread
hands every message to handle_inbound, which records and acts in one transaction before the
watcher saves its cursor. Rep notifications (SMTP, webhook) run on the daemon's loop, so a
slow relay never delays the next reply. A watcher thread that dies stops the daemon loudly;
SIGTERM sets the thread's stop event and the task waits for it (about a second).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Awaitable, Callable
from datetime import date, timedelta
from typing import Any

import structlog

from engine.app import App
from engine.daemon.runner import Daemon
from engine.mail.imap import MailboxWatcher, RawInbound, WatcherStatus
from engine.services.handle_inbound import HandleInbound, HandoffEvent

log = structlog.get_logger("nurture.watchers")
NOTIFY_DRAIN_SECONDS = 30.0  # on stop: how long notifications in flight may take


class Watchers:
    """The watchers of one daemon; `status()` is what /healthz and /metrics read."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.watchers: dict[str, MailboxWatcher] = {}
        self._handle: HandleInbound | None = None
        self._pending: set[concurrent.futures.Future[Any]] = set()

    @property
    def mailboxes(self) -> list[str]:
        """The configured mailboxes that have an `imap` section, i.e. are watched."""
        return [name for name, m in self.app.settings.mailboxes.items() if m.imap is not None]

    def tasks(self) -> dict[str, Callable[[asyncio.Event], Awaitable[None]]]:
        """One named task per watched mailbox, for Daemon.add."""
        return {f"watch:{name}": self._task(name) for name in self.mailboxes}

    def status(self) -> dict[str, WatcherStatus]:
        return {name: w.status for name, w in self.watchers.items()}

    def _task(self, mailbox: str) -> Callable[[asyncio.Event], Awaitable[None]]:
        async def run(stop: asyncio.Event) -> None:
            await self.run(mailbox, stop)
        return run

    async def run(self, mailbox: str, stop: asyncio.Event) -> None:
        """Watch `mailbox` in a thread until `stop`; raise if the thread dies."""
        loop = asyncio.get_running_loop()
        halt = threading.Event()
        watcher = self._watcher(mailbox, loop, halt)
        done: asyncio.Future[None] = loop.create_future()
        thread = threading.Thread(target=_in_thread, args=(watcher, loop, done),
                                  name=f"watch:{mailbox}", daemon=True)
        thread.start()
        stopping = asyncio.ensure_future(stop.wait())
        waiters: set[asyncio.Future[Any]] = {done, stopping}
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            halt.set()
            stopping.cancel()
            await asyncio.shield(done)  # re-raises the thread's exception, if any
            await self._drain()
        if not stop.is_set():
            raise RuntimeError(f"the watcher of mailbox '{mailbox}' stopped by itself")

    async def catch_up_once(self) -> None:
        """`run --once`: each watched mailbox caught up once (no IDLE), every message through
        handle_inbound and rep notifications sent, before anything is sent. MailboxError
        when a mailbox cannot be read: sending then could follow an unseen reply."""
        loop = asyncio.get_running_loop()
        for mailbox in self.mailboxes:
            watcher = self._watcher(mailbox, loop, threading.Event())
            try:
                await asyncio.to_thread(watcher.catch_up_once)
            finally:
                await self._drain()
            st = watcher.status
            log.info("imap_caught_up", mailbox=mailbox, handled=st.handled,
                     failed=st.handle_failures, last_uid=st.last_uid)

    def _watcher(self, mailbox: str, loop: asyncio.AbstractEventLoop,
                 halt: threading.Event) -> MailboxWatcher:
        s = self.app.settings
        cfg = s.mailboxes[mailbox].imap
        assert cfg is not None
        handle = self._handler(loop)

        def hand_over(msg: RawInbound) -> None:
            handle(msg)
        watcher = MailboxWatcher(mailbox, cfg, s.secret(cfg.password_env),
                                 self.app.store.cursors, hand_over, halt, since=self._since)
        self.watchers[mailbox] = watcher
        return watcher

    def _handler(self, loop: asyncio.AbstractEventLoop) -> HandleInbound:
        if self._handle is None:
            def on_handoff(event: HandoffEvent) -> None:
                self._notify(event, loop)
            self._handle = self.app.handle_inbound(on_handoff)
        return self._handle

    def _notify(self, event: HandoffEvent, loop: asyncio.AbstractEventLoop) -> None:
        """From the watcher thread: tell the rep on the loop, without waiting for it."""
        future = asyncio.run_coroutine_threadsafe(self.app.notifier.notify(event), loop)
        self._pending.add(future)
        future.add_done_callback(self._notified)

    def _notified(self, future: concurrent.futures.Future[Any]) -> None:
        self._pending.discard(future)
        if not future.cancelled() and future.exception() is not None:
            log.error("handoff_notify_failed", error=repr(future.exception()))

    async def _drain(self) -> None:
        pending = [asyncio.wrap_future(f) for f in list(self._pending)]
        if pending:
            await asyncio.wait(pending, timeout=NOTIFY_DRAIN_SECONDS)

    def _since(self) -> date:
        """Where a first run or a UIDVALIDITY change re-scans from: the oldest live
        enrollment (a reply to it may be in the mailbox already), at most 90 days back."""
        oldest = self.app.store.inbound.oldest_live_enrollment()
        today = self.app.clock.now().date()
        floor = today - timedelta(days=90)
        return max(oldest.date(), floor) if oldest is not None else today


def _in_thread(watcher: MailboxWatcher, loop: asyncio.AbstractEventLoop,
               done: asyncio.Future[None]) -> None:
    try:
        watcher.run()
    except BaseException as exc:  # noqa: BLE001 - handed to the daemon's monitor
        loop.call_soon_threadsafe(_settle, done, exc)
        return
    loop.call_soon_threadsafe(_settle, done, None)


def _settle(done: asyncio.Future[None], exc: BaseException | None) -> None:
    if done.done():
        return
    if exc is None:
        done.set_result(None)
    else:
        done.set_exception(exc)


def add_watchers(daemon: Daemon) -> Watchers:
    """Add a `watch:<mailbox>` task to the daemon per watched mailbox; the Watchers."""
    watchers = Watchers(daemon.app)
    for name, task in watchers.tasks().items():
        daemon.add(name, task)
    return watchers
