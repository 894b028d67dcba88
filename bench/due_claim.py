"""Picking a due batch among a million enrollments: claim_due(500) time and the process's RSS.

Bulk-loads --enrollments leads and enrollments (SQLite: executemany in one transaction;
PostgreSQL: COPY, then VACUUM (ANALYZE) as autovacuum would, and a CHECKPOINT) with a
realistic mix: 70 % active and due over the next 30 days, 5 % active and due now (the
backlog a batch is picked from), 10 % finished, 10 % stopped, 5 % paused (a tenth of those
with their pause just ended); 80 % in the mailbox's sequence, 20 % in a sequence of another
mailbox. Then a fresh process (so its RSS is the engine's, not the loader's) opens the store
as the daemon does and runs --claims consecutive `QueueStore.claim_due(limit=500)`: resume
ended pauses, pick the 500 oldest due rows through the partial due index, mark them, insert
500 touches with their Message-IDs, one committed transaction each. It also times the pick
alone (the SELECT ... LIMIT 500).
Targets: claim < 50 ms, RSS < 200 MB.

    python bench/due_claim.py                        # SQLite and PostgreSQL, 1,000,000
    python bench/due_claim.py --quick                # 100,000, SQLite and PostgreSQL
    python bench/due_claim.py --db sqlite --write    # and update bench/README.md
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from benchlib import database, kinds, machine, parser, pct, rss_mb, write_section  # first: sys.path

from tests.servers.nurture_proc import SEQUENCE, Project

CHUNK = 50_000
SQLITE_TIME = "%Y-%m-%d %H:%M:%S.%f"
LEAD_COLS = ("id", "email", "first_name", "last_name", "company", "stage", "timezone", "owner",
             "source", "fields", "created_at", "updated_at")
ENR_COLS = ("id", "lead_id", "sequence", "state", "stop_reason", "step_index", "step_name",
            "occurrence", "touch_number", "next_due_at", "paused_until", "enrolled_at",
            "last_touch_at", "updated_at", "source")


# --- loading ---------------------------------------------------------------------------------

def _rows(n: int, now: datetime, seed: int = 7) -> Iterator[tuple[tuple, tuple]]:
    """(lead row, enrollment row) pairs; naive UTC datetimes, as the tables store them."""
    rng = random.Random(seed)
    base = now.replace(tzinfo=None)
    for i in range(1, n + 1):
        lead = (i, f"lead{i}@example.com", f"L{i}", "", "", "", "", "", "bench", "{}", base,
                base)
        roll = rng.random()
        state, due, paused, step = "active", None, None, 0
        if roll < 0.70:
            due = base + timedelta(seconds=rng.uniform(60, 30 * 86400))
        elif roll < 0.75:
            due = base - timedelta(seconds=rng.uniform(0, 6 * 3600))
        elif roll < 0.85:
            state, step = "finished", 2
        elif roll < 0.95:
            state, step = "stopped", 1
        else:
            state, due = "paused", base + timedelta(days=1)
            paused = base + (timedelta(days=2) if rng.random() < 0.9 else -timedelta(minutes=5))
        seq = SEQUENCE if rng.random() < 0.8 else "other-mailbox"
        enr = (i, i, seq, state, "replied" if state == "stopped" else "", step,
               f"s{step + 1}" if step < 2 else "", 0, step, due, paused,
               base - timedelta(days=1), None, base, "bench")
        yield lead, enr


def load_sqlite(url: str, n: int, now: datetime) -> None:
    conn = sqlite3.connect(url.split(":///", 1)[1], isolation_level=None)
    conn.execute("PRAGMA synchronous=OFF")  # the loader only: the engine runs with FULL
    conn.execute("BEGIN")
    leads, enrs = [], []
    for lead, enr in _rows(n, now):
        leads.append(lead)
        enrs.append(enr)
        if len(leads) >= CHUNK:
            _sqlite_chunk(conn, leads, enrs)
            leads, enrs = [], []
    _sqlite_chunk(conn, leads, enrs)
    conn.execute("COMMIT")
    conn.close()


def _sqlite_chunk(conn: sqlite3.Connection, leads: list[tuple], enrs: list[tuple]) -> None:
    for table, cols, rows in (("lead", LEAD_COLS, leads), ("enrollment", ENR_COLS, enrs)):
        marks = ",".join("?" * len(cols))
        conn.executemany(  # SQLAlchemy's SQLite DateTime text, so comparisons line up
            f"INSERT INTO {table} ({','.join(cols)}) VALUES ({marks})",
            [tuple(v.strftime(SQLITE_TIME) if isinstance(v, datetime) else v for v in r)
             for r in rows])


def load_postgres(url: str, n: int, now: datetime) -> None:
    import psycopg

    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        with conn.cursor() as cur:
            with cur.copy(f"COPY lead ({','.join(LEAD_COLS)}) FROM STDIN") as copy:
                for lead, _ in _rows(n, now):
                    copy.write_row(lead)
            with cur.copy(f"COPY enrollment ({','.join(ENR_COLS)}) FROM STDIN") as copy:
                for _, enr in _rows(n, now):
                    copy.write_row(enr)
            for table in ("lead", "enrollment"):
                cur.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), {n})")
        conn.commit()
        conn.autocommit = True
        # What autovacuum does to a table that grew over time (hint bits, visibility map,
        # statistics), and the bulk load's checkpoint out of the way: the claims below then
        # meet a settled table, not the aftermath of a 1,000,000-row COPY.
        conn.execute("VACUUM (ANALYZE) lead")
        conn.execute("VACUUM (ANALYZE) enrollment")
        conn.execute("CHECKPOINT")


# --- measuring (in a fresh process) ----------------------------------------------------------

def measure(config: Path, claims: int) -> dict[str, float]:
    """Run in the child: the daemon's store, `claims` claim_due(500), the pick alone, RSS."""
    from sqlalchemy import literal_column, select

    from engine.app import App
    from engine.settings import Settings
    from engine.store.tables import Enrollment

    app = App(Settings.load(config, secret_key="bench"))
    send = app.send_due()
    plan, queue, lease = send._planner("sales"), app.store.queue, timedelta(seconds=60)
    now = datetime.now(UTC)
    E = Enrollment.__table__
    seq = E.c.sequence if app.store.db.is_postgres else E.c.sequence.concat("")  # as queue.py
    pick = (select(E.c.id).where(E.c.state == literal_column("'active'"), E.c.next_due_at <= now,
                                 seq.in_([SEQUENCE]))
            .order_by(E.c.next_due_at).limit(500))
    picks, times, got = [], [], 0
    for _ in range(claims):
        with app.store.db.read() as conn:
            t = time.perf_counter()
            conn.execute(pick).all()
            picks.append(time.perf_counter() - t)
        t = time.perf_counter()
        got += len(queue.claim_due("bench-worker", [SEQUENCE], now, 500, lease, plan))
        times.append(time.perf_counter() - t)
    small = []  # the daemon's default batch_size
    for _ in range(claims):
        t = time.perf_counter()
        got += len(queue.claim_due("bench-worker", [SEQUENCE], now, 100, lease, plan))
        small.append(time.perf_counter() - t)
    rss, peak = rss_mb()
    return {"claim_p50": pct(times, 50) * 1000, "claim_max": max(times) * 1000,
            "claim_first": times[0] * 1000, "pick_p50": pct(picks, 50) * 1000,
            "claim100_p50": pct(small, 50) * 1000, "claimed": got, "rss": rss, "peak": peak}


def run(kind: str, n: int, claims: int) -> dict[str, float]:
    now = datetime.now(UTC)
    with database(kind) as url, tempfile.TemporaryDirectory(prefix="nurture-bench-") as tmp:
        project = Project(Path(tmp), url, 25, steps=2)
        project.nurture("db", "upgrade")
        t = time.perf_counter()
        (load_sqlite if kind == "sqlite" else load_postgres)(url, n, now)
        loaded = time.perf_counter() - t
        child = subprocess.run(
            [sys.executable, __file__, "--measure", str(project.config), "--claims", str(claims)],
            capture_output=True, text=True, check=False)
        if child.returncode != 0:
            raise RuntimeError(child.stderr[-3000:])
        result = json.loads(child.stdout.strip().splitlines()[-1])
    result.update(db=kind, enrollments=n, load_s=loaded)
    print(json.dumps(result), file=sys.stderr)
    return result


def report(results: list[dict[str, float]], claims: int, started: str) -> str:
    rows = "\n".join(
        f"| {r['db']} | {r['enrollments']:,} | {r['load_s']:.0f} | {r['pick_p50']:.1f} | "
        f"{r['claim_first']:.1f} | {r['claim_p50']:.1f} | {r['claim_max']:.1f} | "
        f"{r['claim100_p50']:.1f} | {r['rss']:.0f} | {r['peak']:.0f} |" for r in results)
    return f"""\
`python bench/due_claim.py` on {started}. Enrollments bulk-loaded (SQLite: executemany in one
transaction; PostgreSQL: COPY, then VACUUM (ANALYZE) and a CHECKPOINT, the state autovacuum
leaves a table that grew over time in): 70 % active and due over the next 30 days, 5 % due
now (about 40,000 of them in the mailbox's sequence), 10 % finished, 10 % stopped, 5 % paused;
80 % in the mailbox's sequence. A fresh process opens the store as the daemon does and runs
{claims} consecutive `claim_due(limit=500)` (resume ended pauses, pick the oldest due through
the partial index, mark them, insert 500 touches: one committed transaction each). "pick" is
the SELECT ... LIMIT 500 alone; "claim 100" is the same claim with the daemon's default
`batch_size` (100). RSS is that process's, after the claims. Targets: claim < 50 ms,
RSS < 200 MB.

| database | enrollments | load s | pick p50 ms | first claim ms | claim p50 ms | claim max ms \
| claim 100 p50 ms | RSS MB | peak RSS MB |
|---|---|---|---|---|---|---|---|---|---|
{rows}
"""


def main(argv: list[str] | None = None) -> str:
    ap = parser(__doc__)
    ap.add_argument("--enrollments", type=int, default=1_000_000)
    ap.add_argument("--claims", type=int, default=10)
    ap.add_argument("--quick", action="store_true", help="100,000 enrollments, 5 claims")
    ap.add_argument("--measure", type=Path, help=argparse.SUPPRESS)  # the child process
    args = ap.parse_args(argv)
    if args.measure:
        print(json.dumps(measure(args.measure, args.claims)))
        return ""
    if args.quick:
        args.enrollments, args.claims = 100_000, 5
    started = machine()
    dbs = kinds(args.db)
    text = report([run(k, args.enrollments, args.claims) for k in dbs], args.claims, started)
    print(text)
    if args.write:
        write_section("due_claim", "Picking a due batch among a million enrollments", text)
    return text


if __name__ == "__main__":
    main()
