"""The watcher against a real Dovecot when handle() fails for a reason that passes (the
database is away): the cursor stays before that message, the watcher retries it with backoff
and says so in its status, and once the database answers the message is handled, then the
ones after it, in order. A message that fails for good is still skipped (test_imap_watcher).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from engine.errors import DatabaseError, MailboxError, RetryLater
from engine.mail.imap import MailboxWatcher, MemoryCursors, RawInbound
from tests.servers.dovecot import DEFAULT_PASSWORD, DEFAULT_USER, Dovecot, make_message
from tests.servers.polling import holds_within

pytestmark = pytest.mark.dovecot
WAIT = 15.0  # upper bound; every wait ends as soon as its condition holds


class Database:
    """A handle() over a database that can be taken away: while `down`, it raises."""

    def __init__(self, error: Exception) -> None:
        self.error = error
        self.down = threading.Event()
        self.handled: list[int] = []  # UIDs handled for good, in order
        self.refused = 0
        self._lock = threading.Lock()

    def __call__(self, msg: RawInbound) -> None:
        with self._lock:
            if self.down.is_set():
                self.refused += 1
                raise self.error
            self.handled.append(msg.uid)


class WatchedCursors(MemoryCursors):
    """Real in-memory cursors that also remember every save, with what was handled then."""

    def __init__(self, db: Database) -> None:
        super().__init__()
        self.db = db
        self.saves: list[tuple[int, tuple[int, ...]]] = []

    def save(self, mailbox: str, folder: str, uidvalidity: int, last_uid: int) -> None:
        self.saves.append((last_uid, tuple(self.db.handled)))
        super().save(mailbox, folder, uidvalidity, last_uid)


def wait_until(condition: Callable[[], object]) -> object:
    return holds_within(condition, WAIT)


@contextmanager
def watching(server: Dovecot, db: Database, cursors: MemoryCursors) -> Iterator[MailboxWatcher]:
    stop = threading.Event()
    watcher = MailboxWatcher("sales", server.imap_config(idle_renew_seconds=5, poll_seconds=1),
                             DEFAULT_PASSWORD, cursors, db, stop, backoff=(0.1, 0.4))
    thread = threading.Thread(target=watcher.run, name="watcher-sales", daemon=True)
    thread.start()
    try:
        assert wait_until(lambda: watcher.status.connected and "INBOX" in watcher.status.last_uid)
        yield watcher
    finally:
        stop.set()
        thread.join(timeout=WAIT)
        assert not thread.is_alive(), "the watcher did not honour stop"


@pytest.mark.parametrize("error", [DatabaseError("the database failed: connection refused"),
                                   RetryLater("UID 1 could not be recorded")],
                         ids=["DatabaseError", "RetryLater"])
def test_a_reply_is_retried_until_the_database_answers(dovecot: Dovecot,
                                                       error: Exception) -> None:
    """While handle() fails for a passing reason the cursor never moves past the reply and
    the status says since when it retries; afterwards the reply and the mail behind it are
    handled, in UID order, and nothing counts as a skipped failure."""
    db = Database(error)
    cursors = WatchedCursors(db)
    with watching(dovecot, db, cursors) as watcher:
        db.down.set()
        reply_uid = dovecot.append(DEFAULT_USER, "INBOX", make_message()[1])
        later_uid = dovecot.append(DEFAULT_USER, "INBOX", make_message()[1])
        assert wait_until(lambda: watcher.status.handle_retries >= 3), watcher.status
        assert watcher.status.retrying_since is not None
        assert str(error) in watcher.status.last_error
        assert cursors.load("sales", "INBOX")[1] < reply_uid
        db.down.clear()
        assert wait_until(lambda: db.handled == [reply_uid, later_uid]), db.handled
        assert wait_until(lambda: watcher.status.retrying_since is None), watcher.status
        assert watcher.status.handle_failures == 0
    assert db.refused >= 3
    # No save ever named the reply's UID (or later) before the reply had been handled.
    assert all(reply_uid in handled for uid, handled in cursors.saves if uid >= reply_uid)


def test_run_once_stops_before_sending_when_a_reply_cannot_be_recorded(dovecot: Dovecot) -> None:
    """`run --once`: a reply the database cannot take is a MailboxError (nothing may be sent)
    and the cursor stays before it, so the next run hands it again."""
    db = Database(DatabaseError("the database failed: connection refused"))
    cursors = MemoryCursors()
    watcher = MailboxWatcher("sales", dovecot.imap_config(), DEFAULT_PASSWORD, cursors, db,
                             threading.Event())
    watcher.catch_up_once()  # first run: the cursor starts at the newest message
    reply_uid = dovecot.append(DEFAULT_USER, "INBOX", make_message()[1])
    db.down.set()
    with pytest.raises(MailboxError, match="could not be recorded"):
        watcher.catch_up_once()
    assert cursors.load("sales", "INBOX")[1] < reply_uid
    db.down.clear()
    watcher.catch_up_once()
    assert db.handled == [reply_uid]
    assert cursors.load("sales", "INBOX")[1] == reply_uid
