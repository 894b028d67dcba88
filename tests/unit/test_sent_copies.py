"""The SentCopy port over IMAP keeps the number of IMAP sessions it opens at once per mailbox
to the mailbox's SMTP connections (servers cap sessions per user: Dovecot 10, Gmail 15)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path
from unittest.mock import patch

from engine.app import SentCopies
from engine.settings import Settings


def test_copies_to_sent_open_no_more_imap_sessions_than_smtp_connections(
        tmp_path: Path) -> None:
    config = tmp_path / "nurture.yaml"
    config.write_text(json.dumps({"mailboxes": {"sales": {
        "address": "sales@acme.test",
        "smtp": {"host": "127.0.0.1", "port": 2525, "tls": "none", "connections": 2},
        "imap": {"host": "127.0.0.1", "port": 1143, "tls": "none", "username": "sales",
                 "password_env": "IMAP_PASSWORD", "sent_folder": "Sent"}}}}))
    copies = SentCopies(Settings.load(config, secrets={"IMAP_PASSWORD": "x"}))
    lock, open_now, most = threading.Lock(), [0], [0]

    def append(_folder: object, _raw: bytes) -> None:  # one IMAP session, 50 ms long
        with lock:
            open_now[0] += 1
            most[0] = max(most[0], open_now[0])
        time.sleep(0.05)
        with lock:
            open_now[0] -= 1

    async def ten_at_once() -> None:
        await asyncio.gather(*(copies.append("sales", b"raw") for _ in range(10)))

    with patch("engine.mail.imap_sent.SentFolder.append", append):
        asyncio.run(ten_at_once())
        asyncio.run(ten_at_once())  # a second event loop (run --once, then run)
    assert most[0] == 2
