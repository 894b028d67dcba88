"""Regressions found by bench/reply_latency.py: mail that lands while the watcher catches up
must not wait for the next IDLE renew (or poll) for minutes.

- Announced together with the server's "+ idling": imaplib buffers both lines, poll() on the
  socket stays quiet; the watcher looks at the buffer and catches up at once.
- Announced inside a catch-up command's response (the SEARCH): the server never repeats it;
  the watcher searches again until nothing new was announced."""

from __future__ import annotations

import threading

import pytest
from imapclient import IMAPClient

from engine.mail import imap_session
from engine.mail.imap import MailboxWatcher, MemoryCursors, RawInbound
from tests.servers.dovecot import DEFAULT_PASSWORD, DEFAULT_USER, Dovecot, make_message

pytestmark = pytest.mark.dovecot
RENEW = 300  # seconds: the old behaviour would hold the second reply this long
WAIT = 20.0  # far below RENEW; ends as soon as the reply is handed over


def test_mail_arriving_just_before_idle_is_not_held_until_the_renew(dovecot: Dovecot) -> None:
    """The second reply is appended while the first is being handled (before IDLE)."""
    handed: list[int] = []
    second = threading.Event()
    stop = threading.Event()

    def handle(msg: RawInbound) -> None:
        handed.append(msg.uid)
        if len(handed) == 1:
            dovecot.append(DEFAULT_USER, "INBOX", make_message()[1])
        else:
            second.set()

    cursors = MemoryCursors()
    watcher = MailboxWatcher("sales", dovecot.imap_config(idle_renew_seconds=RENEW),
                             DEFAULT_PASSWORD, cursors, handle, stop)
    thread = threading.Thread(target=watcher.run)
    thread.start()
    try:
        ready = threading.Event()
        while not ready.wait(0.02):  # the cursor exists: mail from now on is handed over
            if cursors.load("sales", "INBOX") is not None:
                ready.set()
        dovecot.append(DEFAULT_USER, "INBOX", make_message()[1])
        assert second.wait(WAIT), "the second reply waited for the IDLE renew"
        assert handed == [1, 2]
    finally:
        stop.set()
        thread.join(timeout=10)


@pytest.mark.parametrize("idle", [True, False], ids=["idle", "polling"])
def test_mail_announced_inside_the_catch_up_search_is_handed_over(
    dovecot: Dovecot, monkeypatch: pytest.MonkeyPatch, idle: bool
) -> None:
    """A reply lands between EXAMINE and the catch-up's UID SEARCH: Dovecot announces it
    (`* n EXISTS`) at the end of that SEARCH, whose result lacks it, and never again; imaplib
    files the line away. Found by bench/reply_latency.py (1 reply in 10-40 took 300 s)."""
    cfg = dovecot.imap_config(idle=idle, idle_renew_seconds=RENEW, poll_seconds=RENEW)
    cursors = MemoryCursors()
    handed: list[int] = []
    seen = threading.Event()
    stop = threading.Event()

    def handle(msg: RawInbound) -> None:
        handed.append(msg.uid)
        seen.set()

    watcher = MailboxWatcher("sales", cfg, DEFAULT_PASSWORD, cursors, handle, stop)
    watcher.catch_up_once()  # first run: the cursor starts at the (empty) inbox's end
    appended: list[int] = []
    search = imap_session.uids_after

    def search_after_a_reply_landed(client: IMAPClient, last_uid: int) -> list[int]:
        if not appended:
            appended.append(dovecot.append(DEFAULT_USER, "INBOX", make_message()[1]))
        return search(client, last_uid)

    monkeypatch.setattr(imap_session, "uids_after", search_after_a_reply_landed)
    thread = threading.Thread(target=watcher.run)
    thread.start()
    try:
        assert seen.wait(WAIT), "the reply announced during the catch-up was not handed over"
        assert handed == appended
    finally:
        stop.set()
        thread.join(timeout=10)
