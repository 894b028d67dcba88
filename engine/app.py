"""The composition root: builds the adapters from Settings and hands them to the services.

Entry points (cli/, web/, daemon/) make one App and ask it for what they need; nothing
below this module reads Settings from anywhere else.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import TYPE_CHECKING

from engine.errors import DatabaseError
from engine.settings import Settings

if TYPE_CHECKING:
    from engine.authoring.live import LiveCatalog, LiveRenderer
    from engine.mail.imap_sent import SentFolder
    from engine.mail.smtp import SmtpSender
    from engine.services.enroll import Enroller
    from engine.services.handle_inbound import HandleInbound, HandoffEvent
    from engine.services.handoff import Handoffs
    from engine.services.lead_changes import LeadChanges
    from engine.services.messages import MessageMaker
    from engine.services.notify import Notifier
    from engine.services.recover import Recovery
    from engine.services.send_due import SendDue
    from engine.services.tasks import Tasks
    from engine.services.unsubscribe import Unsubscriber
    from engine.store.store import Store


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class SentCopies:
    """The SentCopy port over IMAP: one SentFolder per mailbox that names a Sent folder.
    Each copy is an IMAP session of its own: at most as many at once per mailbox as it has
    SMTP connections (servers cap sessions per user: Dovecot 10, Gmail 15)."""

    def __init__(self, settings: Settings) -> None:
        from engine.mail.imap_sent import SentFolder

        self._folders: dict[str, SentFolder] = {
            name: SentFolder(m.imap, settings.secret(m.imap.password_env))
            for name, m in settings.mailboxes.items() if m.imap and m.imap.sent_folder
        }
        self._sessions = {name: max(m.smtp.connections, 1)
                          for name, m in settings.mailboxes.items()}
        self._limits: dict[str, asyncio.Semaphore] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    def configured(self, mailbox: str) -> bool:
        return mailbox in self._folders

    async def append(self, mailbox: str, raw: bytes) -> None:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # semaphores belong to one event loop
            self._limits, self._loop = {}, loop
        limit = self._limits.get(mailbox)
        if limit is None:
            limit = self._limits[mailbox] = asyncio.Semaphore(self._sessions[mailbox])
        async with limit:
            await asyncio.to_thread(self._folders[mailbox].append, raw)

    async def contains(self, mailbox: str, message_id: str) -> bool:
        return await asyncio.to_thread(self._folders[mailbox].contains, message_id)


class App:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.clock = SystemClock()

    def check_schema(self) -> None:
        """The database is at this version's schema; else one clear DatabaseError, saying
        where nurture looked when no config file was found."""
        try:
            self.store.db.check_schema()
        except DatabaseError as exc:
            raise DatabaseError(f"{exc}{self.settings.config_hint()}") from None

    def close(self) -> None:
        """Close the database connections, if any were opened (the SMTP pool is async: its
        owner awaits `sender.close()`)."""
        if "store" in self.__dict__:
            self.store.close()

    # --- adapters --------------------------------------------------------------------------

    @cached_property
    def store(self) -> Store:
        from engine.store.store import Store

        return Store(self.settings.database_url)

    @cached_property
    def catalog(self) -> LiveCatalog:
        """The sequences as validated; `nurture run` swaps in a new snapshot on reload."""
        from engine.authoring.catalog import load_catalog
        from engine.authoring.live import LiveCatalog

        s = self.settings
        return LiveCatalog(lambda: load_catalog(s.sequences_dir, s.templates_dir,
                                                list(s.mailboxes), s.default_timezone))

    @cached_property
    def renderer(self) -> LiveRenderer:
        """The templates of the catalog in use, exactly as they were validated."""
        from engine.authoring.live import LiveRenderer

        return LiveRenderer(self.catalog)

    @cached_property
    def sender(self) -> SmtpSender:
        from engine.mail.smtp import SmtpSender

        return SmtpSender(dict(self.settings.mailboxes), self.settings.secret)

    @cached_property
    def sent_copy(self) -> SentCopies:
        return SentCopies(self.settings)

    @cached_property
    def worker_name(self) -> str:
        # A fresh suffix per start: a restarted container reuses host and pid, and replicas
        # sharing a hostname all run as pid 1. 48 random bits: two never get the same name.
        return self.settings.worker_name or (
            f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(6)}")

    # --- services --------------------------------------------------------------------------

    @cached_property
    def maker(self) -> MessageMaker:
        from engine.mail.compose import message_bytes
        from engine.services.messages import MessageMaker, MessageSettings
        from engine.services.planning import Planning

        s = self.settings
        return MessageMaker(
            self.renderer, message_bytes, Planning(self.catalog.sequences, s.default_timezone),
            MessageSettings(s.base_url, s.secret_key, s.unsubscribe_mailto, s.postal_address),
        )

    def send_due(self) -> SendDue:
        from engine.services.send_due import SendDue, SendSettings

        s = self.settings
        return SendDue(
            queue=self.store.queue, mailbox_store=self.store.mailboxes, catalog=self.catalog,
            sender=self.sender, maker=self.maker, clock=self.clock,
            mailboxes=dict(s.mailboxes), sent_copy=self.sent_copy,
            settings=SendSettings(self.worker_name, s.batch_size,
                                  timedelta(seconds=s.lease_seconds), s.default_timezone),
        )

    def enroller(self, wake: Callable[[], None] | None = None) -> Enroller:
        from engine.services.enroll import Enroller

        return Enroller(self.store.leads, self.catalog, self.clock,
                        self.settings.default_timezone, wake)

    @cached_property
    def tasks(self) -> Tasks:
        from engine.services.tasks import Tasks

        return Tasks(self.store.workers, self.catalog, self.clock,
                     self.settings.default_timezone)

    @cached_property
    def recovery(self) -> Recovery:
        from engine.services.recover import Recovery

        return Recovery(self.store.workers, self.catalog, self.clock,
                        self.settings.default_timezone, self.stale_after, self.sent_copy)

    @property
    def stale_after(self) -> timedelta:
        """A worker whose heartbeat is this old is dead: about three missed beats."""
        return timedelta(seconds=3 * self.settings.heartbeat_seconds)

    # --- web (engine/web) ----------------------------------------------------------------

    @cached_property
    def unsubscriber(self) -> Unsubscriber:
        from engine.services.unsubscribe import Unsubscriber

        return Unsubscriber(self.store.leads, self.clock, self.settings.secret_key)

    @cached_property
    def lead_changes(self) -> LeadChanges:
        from engine.services.lead_changes import LeadChanges

        return LeadChanges(self.store.leads, self.clock)

    # --- replies and handoffs (services/handle_inbound, notify, handoff) ------------------

    def handle_inbound(
        self, on_handoff: Callable[[HandoffEvent], None] | None = None,
    ) -> HandleInbound:
        """The watchers' consumer; `on_handoff` is told (after commit) to notify the rep."""
        from engine.mail.parse import parse_inbound
        from engine.services.handle_inbound import HandleInbound, InboundSettings

        s = self.settings
        own = {m.address.lower() for m in s.mailboxes.values()}
        own |= {r.email.lower() for r in s.reps if r.email}
        return HandleInbound(
            self.store.inbound, self.catalog, self.clock, parse_inbound,
            InboundSettings(s.default_timezone, tuple(r.name for r in s.reps), frozenset(own)),
            on_handoff,
        )

    @cached_property
    def notifier(self) -> Notifier:
        from engine.mail.compose import message_bytes
        from engine.services.notify import Notifier, NotifySettings

        s = self.settings
        return Notifier(self.store.handoffs, self.sender, message_bytes, self.clock,
                        NotifySettings(s.base_url, dict(s.mailboxes),
                                       {r.name: r for r in s.reps}, s.notify_webhook))

    def handoffs(self, wake: Callable[[], None] | None = None) -> Handoffs:
        from engine.services.handoff import Handoffs

        s = self.settings
        return Handoffs(self.store.handoffs, self.catalog, self.clock, s.default_timezone,
                        tuple(r.name for r in s.reps), wake)
