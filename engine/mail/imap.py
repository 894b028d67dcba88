"""The mailbox watcher: IMAP IDLE (or polling) on a mailbox's folders, resumable by UID.

One MailboxWatcher per mailbox, each in its own thread (IMAPClient is not thread-safe). It
hands every new message to `handle` in UID order and saves the cursor (UIDVALIDITY, last UID)
only after `handle` returned: delivery is at-least-once and the consumer dedupes on
(mailbox, folder, uidvalidity, uid) and on Message-ID. When `handle` fails for a reason that
passes (RetryLater, DatabaseError, ConcurrentUpdate) the cursor stays before that message and
the watcher retries it with backoff; any other failure skips it. See docs/imap.md.
"""

from __future__ import annotations

import select
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any, Protocol

import structlog
from imapclient import IMAPClient

from engine.errors import ConcurrentUpdate, DatabaseError, MailboxError, RetryLater
from engine.mail import imap_session as imap
from engine.mail.imap_sent import SentFolder
from engine.settings import ImapConfig

__all__ = [
    "CursorStore",
    "MailboxWatcher",
    "MemoryCursors",
    "RawInbound",
    "SentFolder",
    "WatcherStatus",
]

RESCAN_DAYS = 14  # bounded re-scan after a UIDVALIDITY change when no `since` is given
BATCH = 50  # messages per FETCH: bounded memory on a large catch-up
CHECK_SECONDS = 1.0  # idle_check / wait slice: how quickly `stop` is honoured
# handle() or the CursorStore failed for a reason that passes (the database is down for a
# moment): the message is handed again later, never skipped, or a reply would be lost.
TRANSIENT = (RetryLater, DatabaseError, ConcurrentUpdate)


@dataclass(frozen=True)
class RawInbound:
    """One message as it sits in the mailbox, before parsing."""

    mailbox: str
    folder: str
    uidvalidity: int
    uid: int
    raw: bytes
    internal_date: datetime | None


class CursorStore(Protocol):
    """Where a watcher resumes: (uidvalidity, last_uid) per (mailbox, folder)."""

    def load(self, mailbox: str, folder: str) -> tuple[int, int] | None: ...

    def save(self, mailbox: str, folder: str, uidvalidity: int, last_uid: int) -> None: ...


class MemoryCursors:
    """An in-memory CursorStore (tests, `nurture run --once` without a database)."""

    def __init__(self) -> None:
        self._data: dict[tuple[str, str], tuple[int, int]] = {}
        self._lock = threading.Lock()

    def load(self, mailbox: str, folder: str) -> tuple[int, int] | None:
        with self._lock:
            return self._data.get((mailbox, folder))

    def save(self, mailbox: str, folder: str, uidvalidity: int, last_uid: int) -> None:
        with self._lock:
            self._data[(mailbox, folder)] = (uidvalidity, last_uid)


@dataclass(frozen=True)
class WatcherStatus:
    """A snapshot for health and metrics.

    last_event_at is the last time the server answered (catch-up, IDLE response, NOOP):
    a stale value means the watcher is not hearing from its mailbox. retrying_since is set
    while a message waits because handle() (or the cursor store) failed for a reason that
    passes; handle_failures counts messages skipped because handle() failed for good.
    """

    connected: bool = False
    last_event_at: datetime | None = None
    last_uid: dict[str, int] = field(default_factory=dict)
    last_error: str = ""
    reconnects: int = 0
    handled: int = 0
    handle_failures: int = 0
    handle_retries: int = 0
    retrying_since: datetime | None = None


class MailboxWatcher:
    """Watches one mailbox's folders and hands new messages to `handle`; call run() in a thread.

    One connection: IDLE on the first folder in cfg.folders, the others are caught up on
    every wake-up and at least every cfg.poll_seconds.
    """

    def __init__(
        self,
        mailbox: str,
        cfg: ImapConfig,
        password: str,
        cursors: CursorStore,
        handle: Callable[[RawInbound], None],
        stop: threading.Event,
        log: Any = None,
        since: Callable[[], date] | None = None,
        *,
        timeout: float = 30.0,
        backoff: tuple[float, float] = (1.0, 60.0),
    ) -> None:
        if not cfg.folders:
            raise MailboxError(f"mailbox {mailbox!r}: imap.folders is empty; list at least INBOX")
        self.mailbox, self.cfg, self._password = mailbox, cfg, password
        self.cursors, self.handle, self.stop, self.since = cursors, handle, stop, since
        self.log = (log or structlog.get_logger("nurture.imap")).bind(mailbox=mailbox)
        self.timeout, self.backoff = timeout, backoff
        self._status = WatcherStatus()
        self._caught_up = False
        self._unavailable: set[str] = set()  # folders already said to be unavailable

    @property
    def status(self) -> WatcherStatus:
        return self._status

    def _set(self, **changes: Any) -> None:
        # Replaced whole, never mutated: readers in other threads see a consistent snapshot.
        self._status = replace(self._status, **changes)

    def _heard(self) -> None:
        self._set(last_event_at=datetime.now(UTC))

    # -- connection loop ---------------------------------------------------------------------

    def run(self) -> None:
        """Watch until `stop` is set; reconnect with capped exponential backoff on any error.

        Connection and IMAP errors, and failures that pass (TRANSIENT), never end it;
        anything else (e.g. a bug in the CursorStore) is logged as imap_watcher_crashed and
        raised, for the daemon's monitor to see.
        """
        delay = self.backoff[0]
        try:
            while not self.stop.is_set():
                if self._session():
                    delay = self.backoff[0]  # it worked until now: start the backoff afresh
                if self.stop.wait(delay):
                    break
                delay = min(delay * 2, self.backoff[1])
        except Exception as exc:
            self._set(connected=False, last_error=repr(exc))
            self.log.exception("imap_watcher_crashed")
            raise
        self._set(connected=False)
        self.log.info("imap_watcher_stopped")

    def catch_up_once(self) -> None:
        """One connection: catch every folder up by UID, then return (`nurture run --once`).

        MailboxError when the server cannot be reached or read: the caller must not send,
        since a reply may be waiting there unseen.
        """
        try:
            with imap.session(self.cfg, self._password, self.timeout) as client:
                self._set(connected=True, last_error="")
                self._catch_up_all(client, self.cfg.folders)
        except imap.CONNECTION_ERRORS as exc:
            self._set(last_error=str(exc))
            raise MailboxError(f"mailbox '{self.mailbox}': cannot catch up on replies at "
                               f"{self.cfg.host}:{self.cfg.port}: {exc}") from exc
        except TRANSIENT as exc:
            self._retrying(exc)
            raise MailboxError(f"mailbox '{self.mailbox}': a message could not be recorded "
                               f"({exc}); it stays unread by nurture and nothing was sent: "
                               "run again once the database answers") from exc
        finally:
            self._set(connected=False)

    def _session(self) -> bool:
        """One connection until stop or an error; True when it had caught up (a good session)."""
        self._caught_up = False
        try:
            with imap.session(self.cfg, self._password, self.timeout) as client:
                self._set(connected=True, last_error="")
                self.log.info("imap_connected", host=self.cfg.host, folders=self.cfg.folders)
                self._watch(client)
        except imap.CONNECTION_ERRORS as exc:
            event = "imap_connection_lost" if self._status.connected else "imap_connect_failed"
            self._set(connected=False, last_error=str(exc),
                      reconnects=self._status.reconnects + 1)  # fmt: skip
            self.log.warning(event, error=str(exc))
        except TRANSIENT as exc:
            # The session ends with the cursor before the message that failed; the next one
            # (after the backoff) resumes from that saved UID and hands it again.
            self._retrying(exc)
            self._set(connected=False)
        return self._caught_up

    def _retrying(self, exc: Exception) -> None:
        since = self._status.retrying_since or datetime.now(UTC)
        self._set(retrying_since=since, last_error=str(exc),
                  handle_retries=self._status.handle_retries + 1)  # fmt: skip
        self.log.warning("imap_retry_later", error=str(exc), retrying_since=since.isoformat())

    def _recovered(self) -> None:
        since = self._status.retrying_since
        if since is not None:
            self._set(retrying_since=None, last_error="")
            self.log.info("imap_retry_recovered",
                          waited_seconds=round((datetime.now(UTC) - since).total_seconds(), 1))

    def _watch(self, client: IMAPClient) -> None:
        use_idle = self.cfg.idle and b"IDLE" in client.capabilities()
        # The first folder is examined last so that IDLE can start on it without a re-select.
        order = [*self.cfg.folders[1:], self.cfg.folders[0]]
        while not self.stop.is_set():
            before = self._status.handled + self._status.handle_failures
            self._catch_up_all(client, order)
            if self.stop.is_set():
                return
            self._caught_up = True
            self._recovered()
            if self._status.handled + self._status.handle_failures > before:
                # Mail that came while these were handled is found by looking again now;
                # IDLE would only hear of it after the server's notify delay (Dovecot: 0.5 s).
                continue
            if use_idle:
                self._idle(client)
            else:
                self._poll_wait(client)

    # -- waiting for new mail ----------------------------------------------------------------

    def _idle(self, client: IMAPClient) -> None:
        """IDLE until new mail, the renew deadline, the poll deadline (other folders), or stop."""
        wait = self.cfg.idle_renew_seconds
        if len(self.cfg.folders) > 1:
            wait = min(wait, self.cfg.poll_seconds)
        deadline = time.monotonic() + wait
        client.idle()
        if _buffered(client):
            deadline = 0.0  # news arrived with "+ idling": leave IDLE and catch up now
        while not self.stop.is_set() and time.monotonic() < deadline:
            if self._idle_check(client, min(CHECK_SECONDS, deadline - time.monotonic())):
                break
        # DONE also proves the connection is alive: a dead one raises here and we reconnect.
        client.idle_done()
        self._heard()

    def _idle_check(self, client: IMAPClient, timeout: float) -> bool:
        """True when the mailbox changed, or may have: time to leave IDLE and catch up."""
        poller = select.poll()
        poller.register(client.socket().fileno(), select.POLLIN)
        if not poller.poll(max(timeout, 0.0) * 1000):
            return False
        responses = client.idle_check(timeout=0)
        if not responses:
            # Readable but nothing parsed: the server hung up (imapclient#565 spins here
            # forever). Leave IDLE: DONE on a dead socket raises and we reconnect.
            return True
        self._heard()
        for resp in responses:
            if resp and resp[0] == b"BYE":
                raise MailboxError(f"the server closed the connection: {resp[-1]!r}")
            if len(resp) > 1 and resp[1] == b"EXISTS":
                return True
        return False

    def _poll_wait(self, client: IMAPClient) -> None:
        """Polling mode: sleep poll_seconds (stop-aware), then NOOP to prove liveness."""
        if self.stop.wait(self.cfg.poll_seconds):
            return
        client.noop()
        self._heard()

    # -- catching up by UID --------------------------------------------------------------------

    def _catch_up_all(self, client: IMAPClient, folders: list[str]) -> None:
        """Each folder in turn. One that cannot be opened, other than the first, is said (in
        the status and once in the log) and skipped, and tried again next time: a missing
        `Replies` folder used to end every session before INBOX was read."""
        for folder in folders:
            try:
                self._catch_up(client, folder)
            except imap.FolderUnavailable as exc:
                if folder == self.cfg.folders[0]:
                    raise
                self._set(last_error=str(exc))
                if folder not in self._unavailable:
                    self._unavailable.add(folder)
                    self.log.warning("imap_folder_unavailable", folder=folder, error=str(exc))
            if self.stop.is_set():
                return

    def _catch_up(self, client: IMAPClient, folder: str) -> None:
        state = imap.examine(client, folder)
        announced = imap.Announcements(client, state)
        self._heard()
        self._read_new(client, folder, state)
        # Mail that lands meanwhile is announced once, in the response to a SEARCH or FETCH
        # whose result lacks it; IDLE or the next poll would find it only minutes later.
        while announced.new_mail() and not self.stop.is_set():
            self._read_new(client, folder, state)

    def _read_new(self, client: IMAPClient, folder: str, state: imap.FolderState) -> None:
        cursor = self.cursors.load(self.mailbox, folder)
        if cursor is not None and cursor[0] == state.uidvalidity:
            self._show(folder, cursor[1])
            self._deliver(client, folder, state.uidvalidity, imap.uids_after(client, cursor[1]))
            return
        if cursor is None and self.since is None:
            # First run: start from now rather than replaying the whole inbox.
            last = imap.highest_uid(client, state)
            self._save(folder, state.uidvalidity, last)
            self.log.info("imap_cursor_started", folder=folder, last_uid=last)
            return
        self._rescan(client, folder, state, cursor)

    def _rescan(
        self,
        client: IMAPClient,
        folder: str,
        state: imap.FolderState,
        cursor: tuple[int, int] | None,
    ) -> None:
        """First run with `since`, or a UIDVALIDITY change: hand everything SINCE a date."""
        day = self.since() if self.since else datetime.now(UTC).date() - timedelta(RESCAN_DAYS)
        if cursor is not None:
            self.log.warning("imap_uidvalidity_changed", folder=folder, old=cursor[0],
                             new=state.uidvalidity, rescan_since=day.isoformat())  # fmt: skip
        baseline = imap.highest_uid(client, state)
        uids = imap.uids_since(client, day)
        last = self._deliver(client, folder, state.uidvalidity, uids)
        if not self.stop.is_set():
            self._save(folder, state.uidvalidity, max(last, baseline))

    def _deliver(self, client: IMAPClient, folder: str, uidvalidity: int, uids: list[int]) -> int:
        """Hand `uids` to handle() in order, saving the cursor after each; the last UID done."""
        last = 0
        for start in range(0, len(uids), BATCH):
            for msg in imap.fetch(client, uids[start : start + BATCH]):
                self._hand_over(RawInbound(self.mailbox, folder, uidvalidity, msg.uid,
                                           msg.raw, msg.internal_date))  # fmt: skip
                self._save(folder, uidvalidity, msg.uid)
                last = msg.uid
                if self.stop.is_set():
                    return last
            self._heard()
        return last

    def _hand_over(self, msg: RawInbound) -> None:
        try:
            self.handle(msg)
        except TRANSIENT as exc:
            # Not this message's fault (the database is away): the cursor must stay before it.
            self.log.warning("imap_handle_deferred", folder=msg.folder, uid=msg.uid,
                             uidvalidity=msg.uidvalidity, error=str(exc))  # fmt: skip
            raise
        except Exception as exc:  # noqa: BLE001 - a poison message must not block the mailbox
            # Log it loudly and move past its UID; it stays in the mailbox (docs/imap.md).
            self._set(handle_failures=self._status.handle_failures + 1)
            self.log.error("imap_handle_failed", folder=msg.folder, uid=msg.uid,
                           uidvalidity=msg.uidvalidity, error=repr(exc), exc_info=True)  # fmt: skip
            return
        self._set(handled=self._status.handled + 1)
        self.log.debug("imap_message_handed", folder=msg.folder, uid=msg.uid)

    def _save(self, folder: str, uidvalidity: int, last_uid: int) -> None:
        self.cursors.save(self.mailbox, folder, uidvalidity, last_uid)
        self._show(folder, last_uid)

    def _show(self, folder: str, last_uid: int) -> None:
        if self._status.last_uid.get(folder) != last_uid:
            self._set(last_uid={**self._status.last_uid, folder: last_uid})


def _buffered(client: IMAPClient) -> bool:
    """Has imaplib already read server lines that nobody parsed?

    Mail that arrives between the catch-up and IDLE is announced (`* n EXISTS`) in the same
    packet as the server's "+ idling"; imaplib's buffered reader takes both, so poll() on the
    socket never fires and the reply would wait for the next IDLE renew (minutes). Found by
    bench/reply_latency.py.
    """
    sock = client.socket()
    previous = sock.gettimeout()
    sock.settimeout(0.0)  # peek must not wait when nothing is buffered
    try:
        return bool(client._imap.file.peek(1))
    except OSError:
        return False
    finally:
        sock.settimeout(previous)

