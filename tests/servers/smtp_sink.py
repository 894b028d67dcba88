"""A fault-injecting SMTP sink (aiosmtpd), in-process or as a subprocess.

In-process:   with SmtpSink(Faults(tempfail=2)) as sink: ... sink.port, sink.received
Subprocess:   python -m tests.servers.smtp_sink --port 0 --record out.jsonl --faults tempfail=2
              prints `PORT <n>` once listening and appends one JSON line per accepted message
              ({"message_id", "mail_from", "rcpt", "raw", "at"}) so another process (a test
              that SIGKILLs the engine) can count what arrived. SinkProcess wraps this.

Faults (comma-separated key=value): tempfail=N (451 for the first N attempts of each
Message-ID), tempfail_rate=P, reject=a@x|@bad.example (550 5.1.1 at RCPT for these addresses
or domains), drop=N (close the connection instead of answering DATA, first N attempts per
Message-ID: the message is NOT kept, the connection dies before the sink accepts anything),
drop_rate=P, ack_loss=N (keep the message, then close before the 250, first N attempts per
Message-ID: the RFC 1047 duplicate, a copy was accepted but the client cannot know),
ack_loss_rate=P, slow=SECONDS (before each RCPT and DATA reply), quota_after=N (550 5.4.5
quota exceeded once N messages were accepted), seed=N. `ack_lost` counts, per Message-ID,
the accepted copies whose 250 was withheld (the record line says "ack_lost": true).

sent_imap=imap://user:password@127.0.0.1:PORT/Sent (SmtpSink(sent_imap=...), or --sent-imap)
files every accepted message in that IMAP folder before the 250, as Gmail and Exchange file
a copy of what is submitted: the engine's reaper can then find an in-doubt Message-ID there.
"""

from __future__ import annotations

import argparse
import asyncio
import imaplib
import json
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session

_MESSAGE_ID = re.compile(rb"^Message-ID:\s*(<[^>\r\n]+>)", re.IGNORECASE | re.MULTILINE)


@dataclass
class Faults:
    tempfail: int = 0
    tempfail_rate: float = 0.0
    reject: tuple[str, ...] = ()
    drop: int = 0
    drop_rate: float = 0.0
    ack_loss_rate: float = 0.0
    ack_loss: int = 0
    slow: float = 0.0
    quota_after: int = 0
    seed: int = 0

    @classmethod
    def parse(cls, spec: str) -> Faults:
        faults = cls()
        for part in filter(None, (p.strip() for p in spec.split(","))):
            key, _, value = part.partition("=")
            if key == "reject":
                faults.reject = tuple(v.strip().lower() for v in value.split("|") if v.strip())
            elif key in ("tempfail", "drop", "ack_loss", "quota_after", "seed"):
                setattr(faults, key, int(value))
            elif key in ("tempfail_rate", "drop_rate", "ack_loss_rate", "slow"):
                setattr(faults, key, float(value))
            else:
                raise ValueError(f"unknown fault {key!r}")
        return faults


@dataclass(frozen=True)
class Received:
    message_id: str
    mail_from: str
    rcpt: tuple[str, ...]
    raw: bytes
    at: float


@dataclass
class _Handler:
    faults: Faults
    record: Path | None = None
    sent_imap: str = ""  # file accepted messages in this IMAP folder before the 250
    received: list[Received] = field(default_factory=list)
    attempts: Counter[str] = field(default_factory=Counter)
    refused: Counter[str] = field(default_factory=Counter)  # what each fault did, for tests
    ack_lost: Counter[str] = field(default_factory=Counter)  # kept, 250 withheld (RFC 1047)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.faults.seed)
        self.lock = threading.Lock()

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        await self._slow()
        addr = address.lower()
        if any(addr == r or (r.startswith("@") and addr.endswith(r)) for r in self.faults.reject):
            self.refused["reject"] += 1
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        await self._slow()
        raw = bytes(envelope.original_content or b"")
        m = _MESSAGE_ID.search(raw)
        mid = m.group(1).decode() if m else ""
        self.attempts[mid] += 1
        n, f = self.attempts[mid], self.faults
        if f.quota_after and len(self.received) >= f.quota_after:
            self.refused["quota"] += 1
            return "550 5.4.5 Daily user sending quota exceeded"
        if n <= f.drop or self.rng.random() < f.drop_rate:
            self.refused["drop"] += 1
            _drop(server)
            return "421 4.4.2 connection dropped"  # never seen: the transport is gone
        if n <= f.tempfail or self.rng.random() < f.tempfail_rate:
            self.refused["tempfail"] += 1
            return "451 4.3.0 Temporary failure, please try again later"
        # Decided before keeping, so the record line can say the 250 was withheld.
        lose_ack = n <= f.ack_loss or self.rng.random() < f.ack_loss_rate
        if lose_ack:
            self.refused["ack_loss"] += 1
            self.ack_lost[mid] += 1
        msg = Received(mid, envelope.mail_from or "", tuple(envelope.rcpt_tos), raw, time.time())
        # The whole message is here: filing and keeping finish even if the client dies now
        # (aiosmtpd cancels this handler when the connection drops), so the Sent folder never
        # holds a message the record does not.
        await asyncio.shield(self._accept(msg, lose_ack))
        if lose_ack:
            _drop(server)
        return "250 2.0.0 Ok: queued"

    async def _accept(self, msg: Received, ack_lost: bool) -> None:
        if self.sent_imap:
            await asyncio.to_thread(_file_in_folder, self.sent_imap, msg.raw)
        self._keep(msg, ack_lost)

    async def _slow(self) -> None:
        if self.faults.slow:
            await asyncio.sleep(self.faults.slow)

    def _keep(self, msg: Received, ack_lost: bool = False) -> None:
        with self.lock:
            self.received.append(msg)
            if self.record is not None:
                line = json.dumps({"message_id": msg.message_id, "mail_from": msg.mail_from,
                                   "rcpt": list(msg.rcpt), "at": msg.at, "ack_lost": ack_lost,
                                   "raw": msg.raw.decode("utf-8", "replace")})
                with self.record.open("a") as f:
                    f.write(line + "\n")


def _drop(server: SMTP) -> None:
    transport = server.transport
    if transport is not None:
        transport.abort()


def _file_in_folder(url: str, raw: bytes) -> None:
    """APPEND `raw` to imap://user:password@host:port/Folder (one short session)."""
    u = urlsplit(url)
    folder = unquote(u.path.lstrip("/")) or "Sent"
    imap = imaplib.IMAP4(u.hostname or "127.0.0.1", u.port or 143, timeout=10)
    try:
        imap.login(unquote(u.username or ""), unquote(u.password or ""))
        imap.create(folder)  # NO when it exists already: fine
        status, data = imap.append(folder, "(\\Seen)", None, raw)
        if status != "OK":
            raise RuntimeError(f"APPEND to {folder} failed: {data!r}")
    finally:
        imap.logout()


class SmtpSink:
    """The sink on 127.0.0.1, port chosen by the OS, in a thread of its own."""

    def __init__(self, faults: Faults | None = None, record: Path | None = None,
                 sent_imap: str = "") -> None:
        self.handler = _Handler(faults or Faults(), record, sent_imap)
        self.port = 0
        self.sessions = 0  # SMTP connections accepted, to check connection reuse
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.base_events.Server | None = None

    @property
    def received(self) -> list[Received]:
        with self.handler.lock:
            return list(self.handler.received)

    @property
    def faults(self) -> Faults:
        return self.handler.faults

    def start(self) -> SmtpSink:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self._serve(), self._loop)
        self.port = future.result(timeout=10)
        return self

    async def _serve(self) -> int:
        self._server = await self._loop.create_server(self._session, host="127.0.0.1", port=0)
        return int(self._server.sockets[0].getsockname()[1])

    def _session(self) -> SMTP:
        self.sessions += 1
        return SMTP(self.handler, hostname="sink.test", ident="nurture test sink")

    def stop(self) -> None:
        async def close() -> None:
            if self._server is not None:
                self._server.close()
                await self._server.wait_closed()
        asyncio.run_coroutine_threadsafe(close(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        """Poll until `count` messages were accepted (a condition, not a sleep)."""
        deadline = time.monotonic() + timeout
        while len(self.received) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.received

    def __enter__(self) -> SmtpSink:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@pytest.fixture
def smtp_sink() -> Iterator[SmtpSink]:
    """A fault-free sink; tests needing faults build `SmtpSink(Faults(...))` themselves."""
    with SmtpSink() as sink:
        yield sink


class SinkProcess:
    """The sink as a separate process (it outlives an engine that is killed with -9)."""

    def __init__(self, record: Path, faults: str = "", sent_imap: str = "") -> None:
        self.record, self.faults, self.sent_imap = record, faults, sent_imap
        self.proc: subprocess.Popen[str] | None = None
        self.port = 0

    def __enter__(self) -> SinkProcess:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.servers.smtp_sink", "--port", "0",
             "--record", str(self.record), "--faults", self.faults,
             "--sent-imap", self.sent_imap],
            stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[2])
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("PORT "):
            self.proc.kill()
            raise RuntimeError(f"the sink did not start: {line!r}")
        self.port = int(line.split()[1])
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            if self.proc.stdout:
                self.proc.stdout.close()

    def messages(self) -> list[dict[str, Any]]:
        if not self.record.exists():
            return []
        return [json.loads(line) for line in self.record.read_text().splitlines() if line]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--record", type=Path, required=True)
    parser.add_argument("--faults", default="")
    parser.add_argument("--sent-imap", default="", help="file accepted mail in this folder: "
                        "imap://user:password@127.0.0.1:PORT/Sent")
    args = parser.parse_args(argv)
    sink = SmtpSink(Faults.parse(args.faults), args.record, args.sent_imap)
    if args.port:
        raise SystemExit("only --port 0 (a free port chosen by the OS) is supported")
    sink.start()
    print(f"PORT {sink.port}", flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    done.wait()
    sink.stop()


if __name__ == "__main__":
    main()
