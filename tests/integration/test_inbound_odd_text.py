"""Replies whose text no database can store as written, on SQLite and PostgreSQL: a NUL in
the subject (an encoded word) and a UTF-7 body holding a lone surrogate (`+2AA-`). Found by
review: on PostgreSQL the NUL failed the insert and the watcher retried that message forever,
blocking the mailbox; the surrogate failed the driver's encoding and the reply was lost.
Each is now recorded and hands the lead off."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.mail.parse import parse_inbound
from engine.services.handle_inbound import HandleInbound, InboundSettings
from engine.testing import RawMail
from tests.servers.engine_env import make_env, sequence


def reply(message_id: str, subject: str, body: bytes, charset: str) -> bytes:
    return (f"From: ada@example.com\r\nTo: sales@acme.test\r\nSubject: {subject}\r\n"
            f"Message-ID: <odd@example.com>\r\nIn-Reply-To: {message_id}\r\n"
            f"MIME-Version: 1.0\r\nContent-Type: text/plain; charset={charset}\r\n\r\n"
            ).encode() + body + b"\r\n"


@pytest.mark.parametrize(("subject", "body", "charset"), [
    ("=?utf-8?q?Re=3A_Hi=00_there?=", b"Yes, call me on Tuesday.", "utf-8"),
    ("Re: Hi", b"Yes, call me +2AA- on Tuesday.", "utf-7"),
], ids=["nul-in-subject", "lone-surrogate"])
def test_a_reply_with_unstorable_text_is_recorded_and_hands_off(
        tmp_path: Path, db_url: str, subject: str, body: bytes, charset: str) -> None:
    env = make_env(tmp_path, [sequence()], url=db_url)
    env.enroll("ada@example.com", first_name="Ada")
    env.run_once()
    [touch] = env.touches()
    handle = HandleInbound(env.store.inbound, env.catalog, env.clock, parse_inbound,
                           InboundSettings("UTC", ("alice",), frozenset({"sales@acme.test"})))
    done = handle(RawMail(reply(touch.message_id, subject, body, charset)))
    assert done.inbound_id is not None
    [h] = env.store.handoffs.list()
    assert h.email == "ada@example.com"
    report = env.store.reports.lead("ada@example.com")
    assert report is not None and report.enrollments[0]["state"] == "handed_off"
