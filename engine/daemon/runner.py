"""The daemon: a set of named asyncio tasks under one monitor, and `run --once`.

Tasks here: `dispatcher` (send due touches), `heartbeat` (heartbeat + reaper) and, on
PostgreSQL, `listen` (NOTIFY wake-ups) or, on SQLite, `watch_db` (the file changed: another
process enrolled). Others add theirs (`http`, `watch:<mailbox>`) with
`Daemon.add` before `run`. If any task dies the daemon stops loudly (exit 1); SIGTERM or
SIGINT stops it gracefully: no new claims, the SMTP transactions in flight finish and are
recorded, untouched claims are handed back, exit 0.
"""

from __future__ import annotations

import asyncio
import signal
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path

import structlog

from engine.app import App
from engine.daemon.dispatcher import Dispatcher
from engine.daemon.heartbeat import Heartbeat
from engine.errors import ConfigError, NurtureError
from engine.settings import Settings

log = structlog.get_logger("nurture.daemon")
TaskFactory = Callable[[asyncio.Event], Awaitable[None]]


class TaskDied(NurtureError):
    """A daemon task stopped unexpectedly."""


class Daemon:
    def __init__(self, app: App) -> None:
        self.app = app
        s = app.settings
        self.stop = asyncio.Event()
        self.dispatcher = Dispatcher(app.send_due(), app.clock,
                                     idle_poll=1.0 if app.store.db.is_sqlite else 5.0)
        self.heartbeat = Heartbeat(app.store.workers, app.recovery, app.clock,
                                   app.worker_name, s.heartbeat_seconds,
                                   timedelta(seconds=s.lease_seconds))
        # The heartbeat keeps this worker's leases until the dispatcher has recorded its last
        # SMTP transaction: stopping it with the others would let another worker think us
        # dead and retake touches still being sent.
        self._dispatched = asyncio.Event()
        self._tasks: dict[str, TaskFactory] = {
            "dispatcher": self._dispatch,
            "heartbeat": lambda _stop: self.heartbeat.run(self._dispatched),
        }
        if app.store.db.is_postgres:
            from engine.daemon.wake import listen

            url = app.store.db.url
            self._tasks["listen"] = lambda stop: listen(url, self.dispatcher.wake, stop)
        elif app.store.db.is_sqlite and app.store.db.url.split(":///", 1)[-1] not in (
                "", ":memory:"):
            from engine.daemon.wake import watch_sqlite

            path = Path(app.store.db.url.split(":///", 1)[1])
            self._tasks["watch_db"] = lambda stop: watch_sqlite(path, self.dispatcher.wake, stop)

    async def _dispatch(self, stop: asyncio.Event) -> None:
        try:
            await self.dispatcher.run(stop)
        finally:
            self._dispatched.set()

    @property
    def wake(self) -> Callable[[], None]:
        """Hand this to an Enroller so a new lead's first touch goes out at once."""
        return self.dispatcher.wake

    def add(self, name: str, factory: TaskFactory) -> None:
        """Run `factory(stop)` as a named task; it must return soon after `stop` is set."""
        if name in self._tasks:
            raise ValueError(f"a daemon task named {name!r} exists already")
        self._tasks[name] = factory

    async def run(self) -> None:
        preflight(self.app)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_signal, sig)
        await self.heartbeat.register()
        log.info("daemon_started", worker=self.app.worker_name, tasks=sorted(self._tasks))
        try:
            await self._monitor()
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
            await self._shutdown()

    def _on_signal(self, sig: signal.Signals) -> None:
        log.info("daemon_stopping", signal=sig.name)
        self.stop.set()

    async def _monitor(self) -> None:
        tasks = {asyncio.create_task(f(self.stop), name=n): n for n, f in self._tasks.items()}
        stopper = asyncio.create_task(self.stop.wait(), name="stop")
        done, _ = await asyncio.wait({*tasks, stopper}, return_when=asyncio.FIRST_COMPLETED)
        # A task that returns after a stop was asked for (it can finish in the same loop turn
        # as `stopper`) did its job; one that returns before, or raises, died.
        stopping = self.stop.is_set()
        self.stop.set()
        died = [t for t in done if t in tasks
                and (not stopping or (not t.cancelled() and t.exception() is not None))]
        await asyncio.gather(*tasks, return_exceptions=True)  # each finishes its work in flight
        stopper.cancel()
        for task in died:
            exc = task.exception()
            log.error("task_died", task=tasks[task], error=repr(exc))
            raise TaskDied(f"daemon task '{tasks[task]}' stopped: {exc!r}") from exc

    async def _shutdown(self) -> None:
        await self.heartbeat.unregister()
        await self.app.sender.close()
        log.info("daemon_stopped", worker=self.app.worker_name, **dict(self.dispatcher.totals))

    async def run_once(self, before: Callable[[], Awaitable[None]] | None = None,
                       ) -> Counter[str]:
        """One pass for cron-style hosting: recover, `before` (the replies' catch-up), send
        what is due now, hand back, return."""
        preflight(self.app)
        await self.heartbeat.register()
        try:
            await self.heartbeat.beat_and_reap()
            if before is not None:
                await before()
            return await self.dispatcher.run_once()
        finally:
            await self._shutdown()


def preflight(app: App) -> None:
    """Refuse to start with a setting that would fail on the first send."""
    app.check_schema()
    if not app.settings.sequences_dir.is_dir():
        raise ConfigError(f"the sequences directory {app.settings.sequences_dir} does not "
                          f"exist: there is nothing to send{app.settings.config_hint()}")
    if not app.settings.secret_key:
        raise ConfigError(
            "NURTURE_SECRET_KEY is not set: it signs the unsubscribe link in every email. "
            "Set it to a long random value, e.g. `python -c 'import secrets; "
            "print(secrets.token_hex(32))'`, the same on every worker"
        )
    unset = missing_passwords(app.settings)
    if unset:
        raise ConfigError("; ".join(unset) + f": export {'each' if len(unset) > 1 else 'it'} "
                          "(secrets come only from the environment), or remove the "
                          "password_env line")
    for problem in app.catalog.problems:
        log.error("sequence_problem", problem=str(problem))
    missing = {s.mailbox for s in app.catalog.sequences.values()} - set(app.settings.mailboxes)
    for name in sorted(missing):
        log.error("mailbox_not_configured", mailbox=name,
                  hint="its sequences are not sent until nurture.yaml configures it")
    if not app.settings.base_url.startswith("https://"):
        # RFC 8058: one-click unsubscribe needs an https URL; mail carries only the link.
        log.warning("base_url_not_https", base_url=app.settings.base_url,
                    hint="emails go out without List-Unsubscribe-Post (one-click); set "
                         "base_url to the public https address of nurture's web server")


def missing_passwords(settings: Settings) -> list[str]:
    """A mailbox's SMTP or IMAP password named in the config but not in the environment: its
    first send or login would fail with the relay's confusing answer instead."""
    out = []
    for name, m in sorted(settings.mailboxes.items()):
        for part, cfg in (("smtp", m.smtp), ("imap", m.imap)):
            if cfg is not None and cfg.password_env and not settings.secret(cfg.password_env):
                out.append(f"mailboxes.{name}.{part}.password_env names {cfg.password_env}, "
                           "which is not set")
    return out
