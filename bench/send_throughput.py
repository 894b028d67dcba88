"""Send throughput: one nurture process on SQLite vs a bare aiosmtplib loop, same run, same sink.

The sink is aiosmtpd in a process of its own (tests/servers/smtp_sink.py, recording nothing).
Per repeat and per connection count C, in alternation:
  bare:   N pre-built messages (the engine's own bytes, Message-ID and recipient varied) over
          C aiosmtplib connections, each reconnecting after 100 messages as the engine does;
  making: the same loop, each message first made for its lead by the engine's MessageMaker
          (Jinja, Markdown, MIME, signed unsubscribe link; no database): the work any engine
          sending these emails must add to the bare loop;
  engine: N leads enrolled (not timed), then `Daemon.run_once()` (what `nurture run --once`
          runs: register, reap, claim, begin, render, compose, SMTP, finish, JSON logs) sends
          them over the mailbox's C pooled connections;
  without SMTP: the same engine run with a relay that accepts in-process (no socket).
Ratio = engine msgs/s / bare msgs/s (medians over the repeats). Target >= 0.7.

    python bench/send_throughput.py                  # 2,000 messages, C = 1, 2, 4, 3 repeats
    python bench/send_throughput.py --quick          # 300 messages, C = 2, 1 repeat
    python bench/send_throughput.py --write          # and put the table in bench/README.md
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import aiosmtplib
from benchlib import (  # first: puts the repository on sys.path
    database,
    machine,
    parser,
    write_section,
)

from engine.app import App
from engine.daemon.logs import configure
from engine.daemon.runner import Daemon
from engine.domain.lead import LeadRecord
from engine.domain.touch import Claim, SendContext, SendEmail
from engine.mail.smtp import SmtpReply
from engine.settings import Settings
from tests.servers.nurture_proc import SEQUENCE, Project
from tests.servers.smtp_sink import SinkProcess

PER_CONNECTION = 100  # SmtpConfig.messages_per_connection's default
SENDER = "sales@example.com"
_MID = re.compile(rb"^Message-ID: <[^>]+>", re.MULTILINE | re.IGNORECASE)
_TO = re.compile(rb"^To: .+$", re.MULTILINE)


@dataclass
class Point:
    connections: int
    bare: list[float] = field(default_factory=list)  # msgs/s per repeat
    making: list[float] = field(default_factory=list)
    engine: list[float] = field(default_factory=list)
    # CPU ms per message: the engine process during run_once, the sink during each run
    engine_cpu: list[float] = field(default_factory=list)
    sink_cpu: list[float] = field(default_factory=list)
    # the same engine run with NoSmtp: msgs/s and CPU ms/msg
    free: list[float] = field(default_factory=list)
    free_cpu: list[float] = field(default_factory=list)

    def row(self, n: int) -> str:
        bare, eng = statistics.median(self.bare), statistics.median(self.engine)
        free, making = statistics.median(self.free), statistics.median(self.making)
        each = ", ".join(f"{e / b:.2f}" for b, e in zip(self.bare, self.engine, strict=True))
        return (f"| {n} | {self.connections} | {bare:.0f} | {eng:.0f} | {eng / bare:.2f} | "
                f"{each} | {statistics.median(self.engine_cpu):.2f} | "
                f"{statistics.median(self.sink_cpu):.2f} | {making:.0f} | "
                f"{making / bare:.2f} | {eng / making:.2f} | {free:.0f} | "
                f"{statistics.median(self.free_cpu):.2f} | {min(free / bare, 1):.2f} |")


# --- the engine ------------------------------------------------------------------------------

def _project(root: Path, url: str, port: int, connections: int) -> App:
    project = Project(root, url, port, steps=1, connections=connections)
    app = App(Settings.load(project.config, secret_key="bench-secret"))
    app.store.db.upgrade()
    return app


class NoSmtp:
    """A relay that accepts at once without a socket: what the engine costs with SMTP free."""

    async def send(self, mailbox: str, sender: str, recipient: str, raw: bytes) -> SmtpReply:
        await asyncio.sleep(0)
        return SmtpReply(250, "2.0.0 ok")

    async def close(self) -> None:
        pass


async def engine_run(url: str, port: int, n: int, connections: int,
                     no_smtp: bool = False) -> tuple[float, float]:
    """Seconds for `Daemon.run_once()` to send n due first touches, and the CPU seconds
    this process spent meanwhile (every thread)."""
    with tempfile.TemporaryDirectory(prefix="nurture-bench-") as tmp:
        app = _project(Path(tmp), url, port, connections)
        rows = ((i, {"email": f"lead{i}@example.com", "first_name": f"L{i}"}) for i in range(n))
        report = app.enroller().enroll_rows(SEQUENCE, rows, source="bench")
        assert report.enrolled == n, report
        if no_smtp:
            app.__dict__["sender"] = NoSmtp()  # App.sender is a cached_property
        daemon = Daemon(app)
        with open("/dev/null", "w") as devnull, contextlib.redirect_stderr(devnull):
            start, cpu = time.perf_counter(), time.process_time()
            totals = await daemon.run_once()
            elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
        app.store.db.dispose()
    if totals.get("sent") != n:
        raise RuntimeError(f"the engine sent {dict(totals)} of {n}")
    return elapsed, cpu


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (/proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- the baseline ----------------------------------------------------------------------------

def messages_like(sample: bytes, n: int) -> list[tuple[str, bytes]]:
    """n copies of an engine-made message, each with its own Message-ID and recipient."""
    out = []
    for i in range(n):
        rcpt = f"lead{i}@example.com"
        raw = _MID.sub(f"Message-ID: <bench.{i}@example.com>".encode(), sample, count=1)
        out.append((rcpt, _TO.sub(f"To: <{rcpt}>".encode(), raw, count=1)))
    return out


async def bare_run(port: int, messages: list[tuple[str, bytes]], connections: int) -> float:
    """Seconds for C aiosmtplib clients to send the messages (round-robin shares)."""
    start = time.perf_counter()
    await send_shares(port, [messages[c::connections] for c in range(connections)])
    return time.perf_counter() - start


async def send_shares(port: int, shares: list[Iterable[tuple[str, bytes]]]) -> None:
    """One aiosmtplib client per share, sending its (recipient, bytes) one after the other
    and reconnecting after PER_CONNECTION messages, as the engine's pool does."""
    async def client(share: Iterable[tuple[str, bytes]]) -> None:
        smtp: aiosmtplib.SMTP | None = None
        for i, (rcpt, raw) in enumerate(share, 1):
            if smtp is None:
                smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=30)
                await smtp.connect()
            await smtp.sendmail(SENDER, [rcpt], raw)
            if i % PER_CONNECTION == 0:
                await smtp.quit()
                smtp = None
        if smtp is not None:
            await smtp.quit()

    await asyncio.gather(*(client(s) for s in shares))


async def making_run(url: str, port: int, n: int, connections: int) -> float:
    """Seconds for the bare loop when each message is first made by the engine's own
    MessageMaker (window check, Jinja, Markdown, MIME, signed unsubscribe link) for its lead
    (no database, no claim, no record): the least any engine sending these emails must do
    per message on top of the bare loop."""
    with tempfile.TemporaryDirectory(prefix="nurture-bench-") as tmp:
        app = _project(Path(tmp), url, port, connections)
        seq = app.catalog.sequences[SEQUENCE]
        mbox = app.settings.mailboxes[seq.mailbox]
        now = datetime.now(UTC)

        def make(i: int) -> tuple[str, bytes]:
            lead = LeadRecord(id=i, email=f"lead{i}@example.com", first_name=f"L{i}")
            claim = Claim(i, 1, i, i, SEQUENCE, 0, 0, 1, "email", seq.mailbox,
                          f"<bench.{i}@example.com>", 0, now, step_name=seq.steps[0].name)
            made = app.maker.decide(seq, mbox, SendContext(claim, lead, now), now)
            assert isinstance(made, SendEmail), made
            return made.recipient, made.raw

        start = time.perf_counter()
        await send_shares(port, [(make(i) for i in range(c, n, connections))
                                 for c in range(connections)])
        elapsed = time.perf_counter() - start
        app.store.db.dispose()
    return elapsed


async def sample_message(tmp: Path) -> bytes:
    """One message exactly as the engine composes it (a 5-lead warm-up run, recorded)."""
    with SinkProcess(tmp / "sample.jsonl") as sink, database("sqlite") as url:
        await engine_run(url, sink.port, 5, 1)
        return str(sink.messages()[0]["raw"]).encode()


# --- the run ---------------------------------------------------------------------------------

async def measure(n: int, connections: list[int], repeats: int) -> tuple[list[Point], int]:
    with tempfile.TemporaryDirectory(prefix="nurture-bench-") as tmp:
        sample = await sample_message(Path(tmp))
        messages = messages_like(sample, n)
        points = [Point(c) for c in connections]
        with SinkProcess(Path("/dev/null")) as sink:
            for _ in range(repeats):
                for point in points:
                    point.bare.append(n / await bare_run(sink.port, messages, point.connections))
                    with database("sqlite") as url:
                        seconds = await making_run(url, sink.port, n, point.connections)
                    point.making.append(n / seconds)
                    assert sink.proc is not None
                    with database("sqlite") as url:
                        sink_cpu = cpu_seconds(sink.proc.pid)
                        seconds, cpu = await engine_run(url, sink.port, n, point.connections)
                        sink_cpu = cpu_seconds(sink.proc.pid) - sink_cpu
                    point.engine.append(n / seconds)
                    point.engine_cpu.append(1000 * cpu / n)
                    point.sink_cpu.append(1000 * sink_cpu / n)
                    with database("sqlite") as url:
                        seconds, cpu = await engine_run(url, sink.port, n, point.connections,
                                                        no_smtp=True)
                    point.free.append(n / seconds)
                    point.free_cpu.append(1000 * cpu / n)
                    print(f"C={point.connections}: bare {point.bare[-1]:.0f}/s, making "
                          f"{point.making[-1]:.0f}/s, engine "
                          f"{point.engine[-1]:.0f}/s, without SMTP {point.free[-1]:.0f}/s",
                          file=sys.stderr)
    return points, len(sample)


COLUMNS = ("| messages | connections | bare aiosmtplib msgs/s | nurture msgs/s | ratio | "
           "ratio per repeat | nurture CPU ms/msg | sink CPU ms/msg | making loop msgs/s | "
           "making / bare | nurture / making | nurture without SMTP msgs/s | its CPU ms/msg "
           "| ceiling |\n" + "|---" * 14 + "|")


def report(points: list[Point], n: int, repeats: int, size: int, started: str) -> str:
    rows = "\n".join(p.row(n) for p in points)
    return f"""\
`python bench/send_throughput.py` on {started}. One nurture process on SQLite (WAL,
synchronous=FULL, group commit) sends N due first touches with `Daemon.run_once()`: claim,
begin (render + compose + store the bytes), SMTP, finish (record + advance), JSON event logs.
The baseline, in the same run against the same aiosmtpd sink process: a bare aiosmtplib loop
sending the same number of messages (the engine's own bytes, {size} B each) over the same
number of connections, reconnecting every {PER_CONNECTION} messages as the engine does.
Medians of {repeats} alternating repeats. Target: ratio >= 0.7. CPU ms/msg: the nurture
process's CPU time (all threads) during its run and the sink process's during the same run,
per message; they move much less with the machine's load than msgs/s do. "Making loop": the
bare loop again, in the same repeat, but each message is first made for its lead by the
engine's own MessageMaker (send-window check, Jinja, Markdown -> HTML, HTML -> text, MIME,
signed unsubscribe link; no database, no claim, no record): the least any engine that sends
these emails has to add to the bare loop; "making / bare" is therefore the highest ratio
such an engine could reach, and "nurture / making" what scheduling and the durable state
machine cost on top of it. "Without SMTP":
the same engine run, in the same repeat, with a relay that accepts at once in-process
(`NoSmtp`: no socket, no aiosmtplib): claim, render, both durable writes, logs. "Ceiling"
= that rate / the bare loop's, capped at 1: the ratio the engine could reach if its own
SMTP client cost nothing.

{COLUMNS}
{rows}
"""


def main(argv: list[str] | None = None) -> str:
    ap = parser(__doc__, db=None)
    ap.add_argument("--messages", type=int, default=2000)
    ap.add_argument("--connections", default="1,2,4", help="comma-separated counts")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="300 messages, C=2, one repeat")
    args = ap.parse_args(argv)
    if args.quick:
        args.messages, args.connections, args.repeats = 300, "2", 1
    configure("json")
    started = machine()
    conns = [int(c) for c in args.connections.split(",")]
    points, size = asyncio.run(measure(args.messages, conns, args.repeats))
    text = report(points, args.messages, args.repeats, size, started)
    print(text)
    if args.write:
        write_section("send_throughput", "Send throughput vs a bare aiosmtplib loop", text)
    return text


if __name__ == "__main__":
    main()
