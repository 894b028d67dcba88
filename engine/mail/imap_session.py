"""IMAP connections and the folder reads the watcher needs: connect, EXAMINE, UID search, fetch.

Every function takes a logged-in IMAPClient owned by the calling thread (IMAPClient is not
thread-safe). Connection problems surface as one of CONNECTION_ERRORS; `connect` turns them
into MailboxError with the host and what to check.
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientAbortError, IMAPClientError, LoginError

from engine.errors import MailboxError
from engine.settings import ImapConfig

# A dropped socket, a TLS failure, a timeout (all OSError), an IMAP NO/BAD/BYE/abort
# (IMAPClientError is imaplib's IMAP4.error), or our own MailboxError: the watcher reconnects.
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (OSError, IMAPClientError, MailboxError)

BODY = b"BODY[]"
FETCH_ITEMS = [b"BODY.PEEK[]", b"INTERNALDATE"]  # PEEK: never set \Seen on the rep's mail


@dataclass(frozen=True)
class FolderState:
    """What EXAMINE says about a folder."""

    uidvalidity: int
    uidnext: int | None
    exists: int  # the message count


class Announcements:
    """Has the server announced new mail in its answers to our commands since EXAMINE?

    A server tells of mail that arrived during a command at the end of that command's
    response (`* n EXISTS`), and only once: Dovecot does it in the very UID SEARCH whose result
    lacks the message, and IDLE never repeats it. imaplib files these lines in
    untagged_responses, which `new_mail()` reads and clears.
    """

    def __init__(self, client: IMAPClient, state: FolderState) -> None:
        self._responses = client._imap.untagged_responses  # imapclient does not expose them
        self._count = state.exists  # a lower bound of the folder's message count
        self.new_mail()  # what EXAMINE itself said is in `state`

    def new_mail(self) -> bool:
        """True when the folder may hold mail we have not searched for yet."""
        counts = [int(n) for n in self._responses.pop("EXISTS", [])]
        expunged = len(self._responses.pop("EXPUNGE", []))
        # imaplib keeps no order between EXISTS and EXPUNGE lines: assume the expunges came
        # first to tell news (never misses one), and last for the count from now on.
        news = any(n > self._count - expunged for n in counts)
        self._count = (counts[-1] if counts else self._count) - expunged
        return news


@dataclass(frozen=True)
class Fetched:
    uid: int
    raw: bytes
    internal_date: datetime | None


def connect(cfg: ImapConfig, password: str, timeout: float = 30.0) -> IMAPClient:
    """Open a connection (tls / starttls / none per cfg) and log in."""
    where = f"{cfg.host}:{cfg.port}"
    try:
        client = IMAPClient(
            cfg.host,
            port=cfg.port,
            ssl=cfg.tls == "tls",
            ssl_context=ssl.create_default_context(),
            timeout=timeout,
        )
    except (OSError, IMAPClientError) as exc:
        raise MailboxError(f"cannot reach the IMAP server {where}: {exc}") from exc
    try:
        client.normalise_times = False  # keep INTERNALDATE timezone-aware
        if cfg.tls == "starttls":
            client.starttls(ssl.create_default_context())
        client.login(cfg.username, password)
    except LoginError as exc:
        _close(client)
        raise MailboxError(
            f"IMAP login failed for {cfg.username!r} at {where}: check the username and the "
            f"password in ${cfg.password_env or '<password_env>'} ({_text(exc)})"
        ) from exc
    except (OSError, IMAPClientError) as exc:
        _close(client)
        raise MailboxError(f"IMAP session with {where} failed: {_text(exc)}") from exc
    return client


@contextlib.contextmanager
def session(cfg: ImapConfig, password: str, timeout: float = 30.0) -> Iterator[IMAPClient]:
    """A logged-in client for the duration of a `with` block, logged out afterwards."""
    client = connect(cfg, password, timeout)
    try:
        yield client
    finally:
        _close(client)


def _close(client: IMAPClient) -> None:
    # The connection may already be dead; closing must never raise over the real error.
    try:
        client.logout()
    except Exception:  # noqa: BLE001 - see above
        with contextlib.suppress(Exception):
            client.shutdown()


def _text(exc: BaseException) -> str:
    arg = exc.args[0] if exc.args else exc
    return arg.decode(errors="replace") if isinstance(arg, bytes) else str(arg)


class FolderUnavailable(MailboxError):
    """The server refused to open one folder (it does not exist, no right to read it); the
    connection itself is fine."""


def examine(client: IMAPClient, folder: str) -> FolderState:
    """SELECT read-only (EXAMINE): we never change flags in the rep's mailbox."""
    try:
        info = client.select_folder(folder, readonly=True)
    except IMAPClientAbortError:
        raise  # the connection died: not the folder's fault
    except IMAPClientError as exc:
        raise FolderUnavailable(f"cannot open the folder {folder!r}: {_text(exc)}") from exc
    uidnext = info.get(b"UIDNEXT")
    return FolderState(int(info[b"UIDVALIDITY"]), int(uidnext) if uidnext else None,
                       int(info.get(b"EXISTS", 0)))


def highest_uid(client: IMAPClient, state: FolderState) -> int:
    """The UID of the newest message now in the folder (0 when empty)."""
    if state.uidnext is not None:
        return state.uidnext - 1
    # UIDNEXT is required by RFC 3501, but be lenient with servers that omit it.
    return max(client.search("ALL") or [0])


def uids_after(client: IMAPClient, last_uid: int) -> list[int]:
    """UIDs greater than last_uid, ascending.

    `UID n:*` always matches the newest message even when its UID is below n (RFC 3501
    6.4.8: `*` is the largest UID in use), so the result is filtered.
    """
    found = client.search(["UID", f"{last_uid + 1}:*"])
    return sorted(uid for uid in found if uid > last_uid)


def uids_since(client: IMAPClient, day: date) -> list[int]:
    """UIDs of messages whose internal date is on or after `day`, ascending."""
    return sorted(client.search(["SINCE", day]))


def fetch(client: IMAPClient, uids: list[int]) -> list[Fetched]:
    """The raw messages for `uids`, in UID order; UIDs expunged meanwhile are absent."""
    data = client.fetch(uids, FETCH_ITEMS)
    out = []
    for uid in sorted(data):
        item = data[uid]
        if BODY in item:
            # RFC 3501 allows NIL for a body the server cannot give: an empty message, not
            # a crash (the same UID would crash every restart).
            out.append(Fetched(uid, bytes(item[BODY] or b""), item.get(b"INTERNALDATE")))
    return out
