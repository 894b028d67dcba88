"""When a catch-up must search again: the server's EXISTS / EXPUNGE lines since EXAMINE,
as imaplib files them (values as bytes, one list per kind, no order between kinds)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from engine.mail.imap_session import Announcements, FolderState


def announcements(exists: int) -> tuple[Announcements, dict[str, list[bytes]]]:
    responses: dict[str, list[bytes]] = {"EXISTS": [str(exists).encode()]}  # EXAMINE's own
    client: Any = SimpleNamespace(_imap=SimpleNamespace(untagged_responses=responses))
    return Announcements(client, FolderState(uidvalidity=1, uidnext=exists + 1,
                                             exists=exists)), responses  # fmt: skip


@pytest.mark.parametrize(
    ("lines", "news"),
    [
        ({}, False),
        ({"EXISTS": [b"3"]}, False),  # a server may repeat the count it already gave
        ({"EXISTS": [b"4"]}, True),
        ({"EXISTS": [b"3", b"4"]}, True),
        ({"EXPUNGE": [b"1"]}, False),
        ({"EXPUNGE": [b"1"], "EXISTS": [b"2"]}, False),
        ({"EXPUNGE": [b"1"], "EXISTS": [b"3"]}, True),  # one went, one came
    ],
)
def test_new_mail_after_examine_said_three(lines: dict[str, list[bytes]], news: bool) -> None:
    announced, responses = announcements(3)
    assert announced.new_mail() is False  # EXAMINE's EXISTS is not news
    responses.update(lines)
    assert announced.new_mail() is news
    assert announced.new_mail() is False  # read once, then cleared
    assert "EXISTS" not in responses and "EXPUNGE" not in responses


def test_the_count_follows_the_announcements() -> None:
    announced, responses = announcements(3)
    responses["EXISTS"] = [b"5"]
    assert announced.new_mail()
    responses["EXISTS"] = [b"5"]  # the same count again: nothing new
    assert not announced.new_mail()
    responses.update(EXPUNGE=[b"2", b"2"])
    assert not announced.new_mail()
    responses["EXISTS"] = [b"4"]  # 5 - 2 + 1
    assert announced.new_mail()


def test_a_body_the_server_gives_as_nil_is_an_empty_message() -> None:
    """`BODY[] NIL` (RFC 3501 allows it): an empty message, handled and passed; it raised
    TypeError, which stopped the daemon, and again after every restart (found by review)."""
    from engine.mail.imap_session import BODY, fetch

    class Client:
        def fetch(self, uids: list[int], items: list[bytes]) -> dict[int, dict[bytes, object]]:
            return {7: {BODY: None, b"INTERNALDATE": None}, 8: {BODY: b"Subject: x\r\n\r\nhi"}}

    got = fetch(Client(), [7, 8])  # type: ignore[arg-type]
    assert [(f.uid, f.raw) for f in got] == [(7, b""), (8, b"Subject: x\r\n\r\nhi")]
