"""The mailbox's Sent folder: a copy of each sent touch, so the rep's mail client shows the thread.

Synchronous, one short IMAP session per call; async callers run it via asyncio.to_thread.
"""

from __future__ import annotations

import re
from datetime import datetime

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError

from engine.errors import MailboxError
from engine.mail import imap_session as imap
from engine.settings import ImapConfig

SEEN = b"\\Seen"
_APPENDUID = re.compile(rb"APPENDUID \d+ (\d+)")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class SentFolder:
    """Append sent mail to a folder of the mailbox, and ask whether a Message-ID is there."""

    def __init__(self, cfg: ImapConfig, password: str, timeout: float = 30.0) -> None:
        self.cfg, self._password, self.timeout = cfg, password, timeout

    def append(
        self, raw: bytes, folder: str | None = None, when: datetime | None = None
    ) -> int | None:
        """Store `raw` flagged \\Seen (creating the folder if missing); its UID when the server
        says (UIDPLUS). No-op returning None when no Sent folder is configured."""
        folder = self.cfg.sent_folder if folder is None else folder
        if not folder:
            return None
        with imap.session(self.cfg, self._password, self.timeout) as client:
            try:
                _ensure_folder(client, folder)
                response = client.append(folder, raw, flags=[SEEN], msg_time=when)
            except (OSError, IMAPClientError) as exc:
                raise MailboxError(f"cannot store the sent copy in {folder!r}: {exc}") from exc
        match = _APPENDUID.search(response or b"")
        return int(match.group(1)) if match else None

    def contains(self, message_id: str, folder: str | None = None) -> bool:
        """Whether a message with this Message-ID header is in the folder (UID SEARCH HEADER)."""
        folder = self.cfg.sent_folder if folder is None else folder
        if not folder or not message_id.strip() or _CONTROL.search(message_id):
            raise MailboxError(f"cannot search {folder!r} for Message-ID {message_id!r}")
        with imap.session(self.cfg, self._password, self.timeout) as client:
            try:
                if not client.folder_exists(folder):
                    return False
                client.select_folder(folder, readonly=True)
                return bool(client.search(["HEADER", "Message-ID", message_id.strip()]))
            except (OSError, IMAPClientError) as exc:
                raise MailboxError(f"cannot search {folder!r}: {exc}") from exc


def _ensure_folder(client: IMAPClient, folder: str) -> None:
    if client.folder_exists(folder):
        return
    try:
        client.create_folder(folder)
        client.subscribe_folder(folder)  # so mail clients list it
    except IMAPClientError:
        # Another session (another worker) may have created it between the two commands.
        if not client.folder_exists(folder):
            raise
