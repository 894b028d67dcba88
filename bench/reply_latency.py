"""Reply -> enrollment stopped: how long after a prospect's reply lands in the mailbox does
the sequence stop? (Issue 4 target: p50 < 1 s, p95 < 2 s, with IMAP IDLE.)

Starts a private Dovecot and an aiosmtpd sink, runs a real `nurture run` (a separate process:
scheduler, watcher, HTTP), enrolls --leads leads and waits for their first emails. Then, per
lead, a reply (In-Reply-To our Message-ID) is APPENDed to the watched INBOX and the clock runs
from the end of the APPEND until the database says the enrollment is `handed_off`. Two
scenarios:
  sequential: one reply at a time (the latency one reply sees);
  burst:      all replies appended back to back (a busy morning), each timed from its own
              APPEND.

    python bench/reply_latency.py                    # SQLite, 50 leads
    python bench/reply_latency.py --db both --append # and PostgreSQL; add to bench/README.md
"""

from __future__ import annotations

import os
import platform
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchlib import git_head, kinds, parser  # noqa: E402

from tests.servers.dovecot import DEFAULT_PASSWORD, DEFAULT_USER, Dovecot  # noqa: E402
from tests.servers.smtp_sink import SmtpSink  # noqa: E402
from tests.servers.trial import SEQUENCE  # noqa: E402

PG_ADMIN = os.environ.get("NURTURE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
POLL = 0.005  # seconds between reads of the enrollment state: bounds the error, spares the CPU
TIMEOUT = 60.0
TEMPLATE = ('---\nsubject: "Hello {{ lead.first_name }}"\n---\nHi {{ lead.first_name }}.\n\n'
            "{{ sender.postal_address }}\n<{{ unsubscribe_url }}>\n")


@dataclass
class Result:
    db: str
    scenario: str
    latencies: list[float]  # seconds, APPEND done -> enrollment handed_off
    appends: list[float]  # seconds, the APPEND itself (IMAP login + APPEND)

    def line(self) -> str:
        lat, app = _ms(self.latencies), _ms(self.appends)
        return (f"| {self.db} | {self.scenario} | {len(lat)} | {_pct(lat, 50):.0f} | "
                f"{_pct(lat, 95):.0f} | {max(lat):.0f} | {statistics.mean(lat):.0f} | "
                f"{_pct(app, 50):.0f} |")


def _ms(values: list[float]) -> list[float]:
    return [v * 1000 for v in values]


def _pct(values: list[float], p: int) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


# --- the rig -----------------------------------------------------------------------------------

def project(root: Path, sink: SmtpSink, dovecot: Dovecot, url: str) -> None:
    (root / "sequences").mkdir()
    (root / "sequences" / "trial.yaml").write_text(SEQUENCE)
    (root / "templates").mkdir()
    (root / "templates" / "hello.md.j2").write_text(TEMPLATE)
    (root / "nurture.yaml").write_text(f"""\
database_url: {url}
base_url: https://nurture.example.com
postal_address: Example Inc., 1 Main Street
heartbeat_seconds: 2
http_port: 0
log_format: json
mailboxes:
  sales:
    address: {DEFAULT_USER}
    per_minute_limit: 100000  # the bench measures replies, not sending limits
    daily_limit: 1000000
    smtp: {{host: 127.0.0.1, port: {sink.port}, tls: none}}
    imap: {{host: 127.0.0.1, port: {dovecot.imap_port}, tls: none, username: {DEFAULT_USER},
           password_env: BENCH_IMAP_PASSWORD, sent_folder: ""}}
reps:
  - {{name: alice, email: alice@reps.example.com}}
""")


def env() -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if not k.startswith("NURTURE_")}
    out.update(PYTHONPATH=str(ROOT), NURTURE_SECRET_KEY="bench-secret",
               BENCH_IMAP_PASSWORD=DEFAULT_PASSWORD)
    return out


def nurture(root: Path, *args: str) -> subprocess.Popen[bytes] | None:
    cmd = [sys.executable, "-c", "from engine.cli.main import main; main()", *args]
    if args[0] == "run":
        return subprocess.Popen(cmd, cwd=root, env=env(), stdout=subprocess.DEVNULL,
                                stderr=open(root / "daemon.log", "wb"))  # noqa: SIM115
    subprocess.run(cmd, cwd=root, env=env(), check=True, capture_output=True)
    return None


@contextmanager
def database(kind: str, root: Path) -> Iterator[tuple[str, Callable[[str, list[object]], list]]]:
    """(url for nurture.yaml, query(sql, params) -> rows) for a fresh database."""
    if kind == "sqlite":
        path = root / "nurture.db"

        def query(sql: str, params: list[object]) -> list:
            with sqlite3.connect(path) as conn:
                return conn.execute(sql.replace("%s", "?"), params).fetchall()
        yield f"sqlite:///{path}", query
        return
    import psycopg

    name = f"nurture_bench_{uuid.uuid4().hex[:10]}"
    admin = psycopg.connect(PG_ADMIN, autocommit=True)
    admin.execute(f'CREATE DATABASE "{name}"')
    url = PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    conn = psycopg.connect(url, autocommit=True)
    try:
        yield url, lambda sql, params: conn.execute(sql, params).fetchall()
    finally:
        conn.close()
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def wait(what: str, condition: Callable[[], object], timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(POLL)


def reply(email: str, message_id: str) -> bytes:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = email, DEFAULT_USER, "Re: Hello"
    msg["Message-ID"] = f"<{uuid.uuid4().hex}@example.com>"
    msg["In-Reply-To"] = msg["References"] = message_id
    msg.set_content("Yes, let's talk on Thursday.\n\nOn Monday you wrote:\n> Hi.\n")
    return msg.as_bytes()


# --- one run -------------------------------------------------------------------------------------

def run(kind: str, leads: int) -> list[Result]:
    with tempfile.TemporaryDirectory(prefix="nurture-bench-") as tmp, SmtpSink() as sink:
        root = Path(tmp)
        dovecot = Dovecot()  # its own temp dir, readable by the mail processes
        dovecot.add_user(DEFAULT_USER, DEFAULT_PASSWORD)
        dovecot.start()
        try:
            with database(kind, root) as (url, query):
                project(root, sink, dovecot, url)
                return measure(root, sink, dovecot, query, kind, leads)
        finally:
            dovecot.cleanup()


def measure(root: Path, sink: SmtpSink, dovecot: Dovecot,
            query: Callable[[str, list[object]], list], kind: str, leads: int) -> list[Result]:
    nurture(root, "db", "upgrade")
    daemon = nurture(root, "run")
    assert daemon is not None
    try:
        return _measure(root, sink, dovecot, query, kind, leads)
    except SystemExit:
        log = (root / "daemon.log").read_text(errors="replace").splitlines()
        print("\n".join(log[-40:]), file=sys.stderr)
        raise
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=60)
        if os.environ.get("BENCH_KEEP_LOG"):
            (Path(os.environ["BENCH_KEEP_LOG"])).write_bytes((root / "daemon.log").read_bytes())


def _measure(root: Path, sink: SmtpSink, dovecot: Dovecot,
             query: Callable[[str, list[object]], list], kind: str, leads: int) -> list[Result]:
    wait("the watcher", lambda: query("SELECT count(*) FROM mailboxcursor", [])[0][0])
    emails = [f"lead{i}@example.com" for i in range(2 * leads)]
    csv = root / "leads.csv"
    csv.write_text("email,first_name\n" + "".join(f"{e},Lead\n" for e in emails))
    nurture(root, "import", "trial", str(csv))
    wait("the first touches", lambda: len(sink.received) >= len(emails))
    first = {m.rcpt[0]: m.message_id for m in sink.received}
    ids = dict(query("SELECT email, id FROM lead", []))
    seq = sequential(dovecot, query, [(e, first[e], ids[e]) for e in emails[:leads]])
    burst_ = burst(dovecot, query, [(e, first[e], ids[e]) for e in emails[leads:]])
    return [Result(kind, "sequential", *seq), Result(kind, "burst", *burst_)]


def stopped(query: Callable[[str, list[object]], list], lead_id: int) -> bool:
    rows = query("SELECT state FROM enrollment WHERE lead_id = %s", [lead_id])
    return bool(rows) and rows[0][0] == "handed_off"


def sequential(dovecot: Dovecot, query: Callable[[str, list[object]], list],
               leads: list[tuple[str, str, int]]) -> tuple[list[float], list[float]]:
    latencies, appends = [], []
    for email, message_id, lead_id in leads:
        t0 = time.perf_counter()
        dovecot.append(DEFAULT_USER, "INBOX", reply(email, message_id))
        t1 = time.perf_counter()
        wait(f"{email} to stop", lambda lead_id=lead_id: stopped(query, lead_id))
        latencies.append(time.perf_counter() - t1)
        appends.append(t1 - t0)
    return latencies, appends


def burst(dovecot: Dovecot, query: Callable[[str, list[object]], list],
          leads: list[tuple[str, str, int]]) -> tuple[list[float], list[float]]:
    appended: dict[int, float] = {}
    appends = []
    for email, message_id, lead_id in leads:
        t0 = time.perf_counter()
        dovecot.append(DEFAULT_USER, "INBOX", reply(email, message_id))
        appended[lead_id] = time.perf_counter()
        appends.append(appended[lead_id] - t0)
    done: dict[int, float] = {}
    deadline = time.monotonic() + TIMEOUT
    while len(done) < len(leads) and time.monotonic() < deadline:
        rows = query("SELECT lead_id FROM enrollment WHERE state = 'handed_off'", [])
        now = time.perf_counter()
        for (lead_id,) in rows:
            if lead_id in appended and lead_id not in done:
                done[lead_id] = now
        time.sleep(POLL)
    if len(done) < len(leads):
        raise SystemExit(f"only {len(done)} of {len(leads)} burst replies stopped in time")
    return [done[i] - appended[i] for i in appended], appends


# --- reporting -----------------------------------------------------------------------------------

HEADER = ("| db | scenario | replies | p50 ms | p95 ms | max ms | mean ms | APPEND p50 ms |\n"
          "|---|---|---|---|---|---|---|---|")


def machine() -> str:
    cpu = "unknown CPU"
    with suppress(OSError, StopIteration):
        cpu = next(line.split(":", 1)[1].strip() for line in
                   Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    return (f"{platform.system()} {platform.release()}, {os.cpu_count()} cores ({cpu}), "
            f"Python {platform.python_version()}, {_dovecot_version()}")


def _dovecot_version() -> str:
    out = subprocess.run(["dovecot", "--version"], capture_output=True, text=True, check=False)
    return f"Dovecot {out.stdout.split()[0]}" if out.stdout else "Dovecot"


def report(results: list[Result], leads: int, kinds: list[str], load: float) -> str:
    db = "both" if len(kinds) > 1 else kinds[0]
    lines = ["", f"### Reply latency, {time.strftime('%Y-%m-%d')}, commit {git_head()}", "",
             f"`python bench/reply_latency.py --db {db} --leads {leads}`: a real `nurture run` "
             "with IMAP IDLE on a private Dovecot (loopback), replies APPENDed one at a time "
             "(sequential) and back to back (burst); time from the end of the APPEND to the "
             f"enrollment being `handed_off` in the database (polled every {POLL * 1000:.0f} "
             f"ms); a reply not handed off within {TIMEOUT:.0f} s fails the run. Machine: "
             f"{machine()}, load average {load:.1f} at the start.", "", HEADER]
    lines += [r.line() for r in results]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = parser(__doc__, db="sqlite", write=False)
    ap.add_argument("--leads", type=int, default=50, help="replies per scenario")
    ap.add_argument("--append", action="store_true", help="add the results to bench/README.md")
    args = ap.parse_args()
    dbs = kinds(args.db)
    load = os.getloadavg()[0]
    results = [r for kind in dbs for r in run(kind, args.leads)]
    text = report(results, args.leads, dbs, load)
    print(text)
    if args.append:
        readme = ROOT / "bench" / "README.md"
        if not readme.exists():
            readme.write_text("# Benchmarks\n\nWhat was run, on what machine, and the numbers.\n")
        with readme.open("a") as f:
            f.write(text)


if __name__ == "__main__":
    main()
