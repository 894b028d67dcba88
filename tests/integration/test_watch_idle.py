"""A regression found by bench/reply_latency.py: mail that lands while the watcher is between
its catch-up and IDLE is announced together with the server's "+ idling"; imaplib buffers
both lines, poll() on the socket stays quiet, and the reply used to wait for the next IDLE
renew (minutes). Now the watcher looks at the buffer and catches up at once."""

from __future__ import annotations

import threading

import pytest

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
