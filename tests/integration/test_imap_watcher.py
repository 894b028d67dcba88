"""The mailbox watcher against a real Dovecot: IDLE, polling, cursors, reconnects, UIDVALIDITY."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from email import message_from_bytes

import pytest

from engine.mail.imap import MailboxWatcher, MemoryCursors, RawInbound
from engine.settings import ImapConfig
from tests.servers.dovecot import DEFAULT_PASSWORD, DEFAULT_USER, Dovecot, make_message
from tests.servers.polling import holds_within

pytestmark = pytest.mark.dovecot

WAIT = 15.0  # generous upper bound: every wait ends as soon as its condition holds
USER = DEFAULT_USER


def message_id_of(msg: RawInbound) -> str:
    return str(message_from_bytes(msg.raw)["Message-ID"])


@dataclass
class Recorder:
    """A handle() that records what it is given and lets the test wait for it."""

    fail_on: set[str] = field(default_factory=set)  # Message-IDs to raise on
    seen: list[RawInbound] = field(default_factory=list)
    cond: threading.Condition = field(default_factory=threading.Condition)

    def __call__(self, msg: RawInbound) -> None:
        with self.cond:
            self.seen.append(msg)
            self.cond.notify_all()
        if message_id_of(msg) in self.fail_on:
            raise ValueError("poison message")

    @property
    def ids(self) -> list[str]:
        with self.cond:
            return [message_id_of(m) for m in self.seen]

    def wait_for(self, *message_ids: str) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: set(message_ids) <= set(self._ids()), WAIT)

    def _ids(self) -> list[str]:
        return [message_id_of(m) for m in self.seen]


def wait_until(condition: Callable[[], object]) -> object:
    return holds_within(condition, WAIT)


def ready(watcher: MailboxWatcher) -> bool:
    """Connected with a cursor for every folder: mail from now on will be handed over."""
    status = watcher.status
    return status.connected and set(watcher.cfg.folders) <= set(status.last_uid)


@contextlib.contextmanager
def watching(
    server: Dovecot,
    handle: Callable[[RawInbound], None],
    cursors: MemoryCursors | None = None,
    cfg: ImapConfig | None = None,
    password: str = DEFAULT_PASSWORD,
    wait_ready: bool = True,
    since: Callable[[], date] | None = None,
) -> Iterator[MailboxWatcher]:
    """Run a watcher in its own thread for the block; stop it and join at the end."""
    cfg = cfg or server.imap_config(idle_renew_seconds=5, poll_seconds=1)
    stop = threading.Event()
    watcher = MailboxWatcher("sales", cfg, password, cursors or MemoryCursors(), handle, stop,
                             since=since, backoff=(0.2, 2.0))  # fmt: skip
    thread = threading.Thread(target=watcher.run, name="watcher-sales", daemon=True)
    thread.start()
    try:
        if wait_ready:
            assert wait_until(lambda: ready(watcher)), watcher.status
        yield watcher
    finally:
        stop.set()
        thread.join(timeout=WAIT)
        assert not thread.is_alive(), "the watcher did not honour stop"


def test_appended_message_is_handed_over_via_idle(dovecot: Dovecot) -> None:
    """A message APPENDed to INBOX reaches handle() promptly through IDLE, with its cursor."""
    rec = Recorder()
    with watching(dovecot, rec) as watcher:
        mid, raw = make_message()
        uid = dovecot.append(USER, "INBOX", raw)
        assert rec.wait_for(mid)
        assert wait_until(lambda: watcher.status.last_uid["INBOX"] == uid)
    got = rec.seen[0]
    assert (got.mailbox, got.folder, got.uid, got.raw) == ("sales", "INBOX", uid, raw)
    assert got.internal_date is not None and got.internal_date.tzinfo is not None


def test_lmtp_delivery_reaches_handle(dovecot: Dovecot) -> None:
    """Mail delivered by a real client (swaks over LMTP) reaches handle()."""
    rec = Recorder()
    with watching(dovecot, rec):
        mid, raw = make_message("Re: pricing")
        dovecot.deliver_lmtp(USER, raw)
        assert rec.wait_for(mid)


def test_first_run_does_not_replay_the_inbox(dovecot: Dovecot) -> None:
    """Without a cursor or `since`, the watcher starts at the newest message, not the oldest."""
    old_mid, old_raw = make_message("old mail")
    dovecot.append(USER, "INBOX", old_raw)
    rec = Recorder()
    with watching(dovecot, rec):
        new_mid, new_raw = make_message()
        dovecot.append(USER, "INBOX", new_raw)
        assert rec.wait_for(new_mid)
    assert rec.ids == [new_mid]


def test_first_run_with_since_hands_recent_mail(dovecot: Dovecot) -> None:
    """With `since`, the first run hands every message received since that date."""
    mids = []
    for _ in range(2):
        mid, raw = make_message()
        dovecot.append(USER, "INBOX", raw)
        mids.append(mid)
    rec = Recorder()
    with watching(dovecot, rec, since=lambda: date.today() - timedelta(days=1)):
        assert rec.wait_for(*mids)
    assert rec.ids == mids


def test_restart_resumes_from_the_cursor_without_duplicates(dovecot: Dovecot) -> None:
    """A new watcher on the same cursors hands only newer mail; nothing is handed twice."""
    cursors, rec = MemoryCursors(), Recorder()
    first, second = make_message(), make_message()
    with watching(dovecot, rec, cursors):
        dovecot.append(USER, "INBOX", first[1])
        assert rec.wait_for(first[0])
    with watching(dovecot, rec, cursors):
        dovecot.append(USER, "INBOX", second[1])
        assert rec.wait_for(second[0])
    assert rec.ids == [first[0], second[0]]


def test_mail_arriving_while_stopped_is_caught_up(dovecot: Dovecot) -> None:
    """Messages that arrive while no watcher runs are handed over, in UID order, on start."""
    cursors = MemoryCursors()
    with watching(dovecot, Recorder(), cursors):
        pass
    missed = [make_message() for _ in range(3)]
    for _mid, raw in missed:
        dovecot.append(USER, "INBOX", raw)
    rec = Recorder()
    with watching(dovecot, rec, cursors):
        assert rec.wait_for(*(mid for mid, _ in missed))
    assert rec.ids == [mid for mid, _ in missed]
    assert [m.uid for m in rec.seen] == sorted(m.uid for m in rec.seen)


@pytest.mark.slow
def test_survives_dovecot_restart_and_misses_nothing(dovecot: Dovecot) -> None:
    """Dovecot stopped (BYE) and started again mid-run: the watcher reconnects and catches
    up by UID, handing every message exactly once."""
    rec = Recorder()
    before, during, after = make_message(), make_message(), make_message()
    with watching(dovecot, rec) as watcher:
        dovecot.append(USER, "INBOX", before[1])
        assert rec.wait_for(before[0])
        dovecot.stop()
        assert wait_until(lambda: not watcher.status.connected)
        dovecot.start()
        dovecot.append(USER, "INBOX", during[1])  # most likely before the watcher is back
        assert rec.wait_for(during[0])
        assert wait_until(lambda: watcher.status.connected)
        dovecot.append(USER, "INBOX", after[1])
        assert rec.wait_for(after[0])
    assert rec.ids == [before[0], during[0], after[0]]
    assert watcher.status.reconnects >= 1


def test_a_dropped_connection_is_noticed_during_idle(dovecot: Dovecot) -> None:
    """The connection dies mid-IDLE without a BYE (bare EOF, where imapclient's idle_check
    would spin): the watcher notices, reconnects, and hands mail that arrived meanwhile."""
    rec = Recorder()
    with watching(dovecot, rec) as watcher:
        assert dovecot.drop_connections() >= 1
        mid, raw = make_message()
        dovecot.append(USER, "INBOX", raw)
        assert rec.wait_for(mid)
        assert wait_until(lambda: watcher.status.reconnects >= 1)
    assert rec.ids == [mid]


def test_uidvalidity_change_triggers_a_rescan(dovecot: Dovecot) -> None:
    """A watched folder deleted and re-created (new UIDVALIDITY, UIDs from 1 again) is
    re-scanned: mail in the new folder is handed over and the watcher keeps running."""
    # Dovecot does not interrupt an IDLE on a deleted folder: the change shows at the renew.
    cfg = dovecot.imap_config(folders=["Leads"], idle_renew_seconds=2, poll_seconds=1)
    dovecot.append(USER, "Leads", make_message()[1])
    rec, cursors = Recorder(), MemoryCursors()
    old_mid, old_raw = make_message()
    with watching(dovecot, rec, cursors, cfg=cfg) as watcher:
        dovecot.append(USER, "Leads", old_raw)
        assert rec.wait_for(old_mid)
        old_validity = cursors.load("sales", "Leads")
        with dovecot.client(USER) as admin:
            admin.delete_folder("Leads")
            admin.create_folder("Leads")
        new_mid, new_raw = make_message()
        dovecot.append(USER, "Leads", new_raw)
        assert rec.wait_for(new_mid)
        assert watcher.status.handle_failures == 0
    new_validity, last_uid = cursors.load("sales", "Leads") or (0, 0)
    assert old_validity is not None and new_validity != old_validity[0]
    assert last_uid == 1


def test_polling_mode_hands_new_mail(dovecot: Dovecot) -> None:
    """With IDLE off, the watcher polls every poll_seconds and hands new mail."""
    cfg = dovecot.imap_config(idle=False, poll_seconds=1)
    rec = Recorder()
    with watching(dovecot, rec, cfg=cfg):
        mid, raw = make_message()
        dovecot.append(USER, "INBOX", raw)
        assert rec.wait_for(mid)


def test_other_folders_are_watched_too(dovecot: Dovecot) -> None:
    """Several folders: IDLE on the first, the others caught up at least every poll_seconds."""
    dovecot.append(USER, "Replies", make_message()[1])  # the folder must exist
    cfg = dovecot.imap_config(folders=["INBOX", "Replies"], idle_renew_seconds=5, poll_seconds=1)
    rec = Recorder()
    with watching(dovecot, rec, cfg=cfg):
        inbox, other = make_message(), make_message()
        dovecot.append(USER, "Replies", other[1])
        dovecot.append(USER, "INBOX", inbox[1])
        assert rec.wait_for(inbox[0], other[0])
    assert {m.folder for m in rec.seen} == {"INBOX", "Replies"}


def test_a_failing_handle_does_not_stop_the_watcher(dovecot: Dovecot) -> None:
    """handle() raising on one message is logged, that UID is skipped, the next is handed."""
    poison, good = make_message(), make_message()
    rec = Recorder(fail_on={poison[0]})
    with watching(dovecot, rec) as watcher:
        dovecot.append(USER, "INBOX", poison[1])
        dovecot.append(USER, "INBOX", good[1])
        assert rec.wait_for(poison[0], good[0])
        assert wait_until(lambda: watcher.status.handled == 1)
        assert watcher.status.handle_failures == 1
    assert rec.ids == [poison[0], good[0]]


def test_wrong_password_is_reported_and_retried(dovecot: Dovecot) -> None:
    """A failed login leaves the watcher disconnected, saying why, and stop still works."""
    with watching(dovecot, Recorder(), password="wrong", wait_ready=False) as watcher:
        assert wait_until(lambda: "login failed" in watcher.status.last_error)
        assert not watcher.status.connected


def test_a_missing_folder_is_reported_then_watched_once_created(dovecot: Dovecot) -> None:
    """A watched folder that does not exist yet is named in the status while INBOX is watched
    all the same (a missing second folder used to end every session before INBOX was read);
    the watcher tries it again and hands its mail once someone creates it."""
    cfg = dovecot.imap_config(folders=["INBOX", "Leads"], idle_renew_seconds=5, poll_seconds=1)
    rec = Recorder()
    with watching(dovecot, rec, cfg=cfg, wait_ready=False, since=date.today) as watcher:
        assert wait_until(lambda: "'Leads'" in watcher.status.last_error)
        inbox = make_message()
        dovecot.append(USER, "INBOX", inbox[1])
        assert rec.wait_for(inbox[0])
        mid, raw = make_message()
        dovecot.append(USER, "Leads", raw)
        assert rec.wait_for(mid)
