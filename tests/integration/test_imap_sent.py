"""The Sent folder against a real Dovecot: append a copy of sent mail, find it by Message-ID."""

from __future__ import annotations

import pytest

from engine.errors import MailboxError
from engine.mail.imap import SentFolder
from tests.servers.dovecot import DEFAULT_PASSWORD, DEFAULT_USER, Dovecot, make_message

pytestmark = pytest.mark.dovecot


def sent_folder(dovecot: Dovecot, **overrides: object) -> SentFolder:
    return SentFolder(dovecot.imap_config(**overrides), DEFAULT_PASSWORD)


def test_append_creates_the_folder_and_marks_the_copy_seen(dovecot: Dovecot) -> None:
    """append() creates a missing Sent folder and stores the message flagged \\Seen."""
    _mid, raw = make_message("Quick question")
    uid = sent_folder(dovecot).append(raw)
    assert uid == 1
    with dovecot.client(DEFAULT_USER) as imap:
        assert imap.folder_exists("Sent")
        imap.select_folder("Sent", readonly=True)
        data = imap.fetch([uid], [b"FLAGS", b"BODY.PEEK[]"])[uid]
    assert b"\\Seen" in data[b"FLAGS"]
    assert data[b"BODY[]"] == raw


def test_contains_finds_an_appended_message_id(dovecot: Dovecot) -> None:
    """contains() is true for a Message-ID we appended and false for another one."""
    sent = sent_folder(dovecot)
    mid, raw = make_message()
    sent.append(raw)
    assert sent.contains(mid)
    assert not sent.contains(make_message()[0])


def test_contains_is_false_when_the_folder_does_not_exist(dovecot: Dovecot) -> None:
    """Asking before anything was ever sent is not an error."""
    assert not sent_folder(dovecot, sent_folder="Sent Items").contains("<x@example.test>")


def test_append_to_a_named_folder(dovecot: Dovecot) -> None:
    """append(folder=...) writes where it is told (e.g. a provider's 'Sent Items')."""
    sent = sent_folder(dovecot)
    mid, raw = make_message()
    sent.append(raw, folder="Sent Items")
    assert sent.contains(mid, folder="Sent Items")
    assert not sent.contains(mid)


def test_no_sent_folder_configured_means_no_copy(dovecot: Dovecot) -> None:
    """An empty sent_folder turns the copy off: append() does nothing and returns None."""
    assert sent_folder(dovecot, sent_folder="").append(make_message()[1]) is None
    with dovecot.client(DEFAULT_USER) as imap:
        assert not imap.folder_exists("Sent")


def test_wrong_password_is_a_clear_mailbox_error(dovecot: Dovecot) -> None:
    """A failed login raises MailboxError naming the user and what to check."""
    sent = SentFolder(dovecot.imap_config(password_env="SALES_IMAP_PASSWORD"), "wrong")
    with pytest.raises(MailboxError, match=r"login failed for 'sales@example.test'.*SALES_IMAP"):
        sent.append(make_message()[1])


def test_unreachable_server_is_a_clear_mailbox_error(dovecot: Dovecot) -> None:
    """A server that is down raises MailboxError naming host and port, not a socket error."""
    dovecot.stop()
    where = f"127.0.0.1:{dovecot.imap_port}"
    with pytest.raises(MailboxError, match=f"cannot reach the IMAP server {where}"):
        sent_folder(dovecot).append(make_message()[1])
