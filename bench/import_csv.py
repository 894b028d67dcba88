"""`nurture import` of a 100,000-row CSV, as a user runs it, against a bare executemany INSERT.

Issue 3 promises "100k rows in well under a minute". This generates a CSV of leads (name,
company, time zone, a custom field) with some rows that must be rejected (not an address)
and some repeated addresses (merged), then, for SQLite and PostgreSQL each on a fresh
database:
- times `nurture import SEQUENCE leads.csv` in a process of its own (wall clock, CPU of that
  process, its peak RSS), after `nurture db upgrade`, and checks its counts;
- baseline, in the same run and on a fresh database of the same kind: the same file read
  with the csv module and the distinct valid rows written with one bare executemany INSERT
  (sqlite3 / psycopg, one transaction) into a table of the lead's columns. It does what a
  hand-written loader would: no validation, no enrollment, no first-touch planning.

    python bench/import_csv.py                 # 100,000 rows, SQLite and PostgreSQL
    python bench/import_csv.py --quick         # 10,000 rows
    python bench/import_csv.py --write         # and update bench/README.md
"""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from benchlib import database, kinds, machine, parser, write_section  # first: sys.path

from tests.servers.nurture_proc import SEQUENCE, Project, _cmd

BAD_EVERY = 97  # about 1% of rows are not an address
REPEAT_EVERY = 53  # about 2% repeat an earlier row's address (merged, not enrolled twice)
ZONES = ("Europe/London", "America/New_York", "Asia/Tokyo", "")
COLUMNS = ("email", "first_name", "last_name", "company", "timezone", "plan")


def write_csv(path: Path, rows: int) -> tuple[int, int]:
    """The file; returns (rows to reject, repeated rows)."""
    bad = repeats = 0
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["Email", "First Name", "Last Name", "Company", "Timezone", "Plan"])
        for i in range(rows):
            if i % BAD_EVERY == BAD_EVERY - 1:
                email, bad = f"not-an-address-{i}", bad + 1
            elif i % REPEAT_EVERY == REPEAT_EVERY - 1:
                email, repeats = f"lead{_first_before(i)}@example.com", repeats + 1
            else:
                email = f"lead{i}@example.com"
            w.writerow([email, f"First{i}", f"Last{i}", f"Company {i % 5000}",
                        ZONES[i % len(ZONES)], ("pro", "team", "trial")[i % 3]])
    return bad, repeats


def _first_before(i: int) -> int:
    """The nearest earlier row that gave a new valid address."""
    j = i - 1
    while j % BAD_EVERY == BAD_EVERY - 1 or j % REPEAT_EVERY == REPEAT_EVERY - 1:
        j -= 1
    return j


@dataclass
class Timing:
    wall: float
    cpu: float = 0.0
    rss_mb: float = 0.0
    output: str = ""


def nurture_process(project: Project, *args: str) -> Timing:
    """A `nurture` command in a process of its own; its CPU and peak RSS from wait4."""
    with tempfile.TemporaryFile("w+") as out:
        start = time.perf_counter()
        proc = subprocess.Popen(_cmd(*args), cwd=project.root,
                                env=project.env(), stdout=out, stderr=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read()
    if proc.returncode != 0:
        raise RuntimeError(f"nurture {args[0]} exited {proc.returncode}: {text[-2000:]}")
    return Timing(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, text)


def bare_insert(kind: str, url: str, csv_path: Path) -> Timing:
    """Read the file, keep the first row of each valid address, one executemany INSERT."""
    start = time.perf_counter()
    cpu = time.process_time()
    with csv_path.open(newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        next(reader)
        rows: dict[str, tuple[str, ...]] = {}
        for r in reader:
            if "@" in r[0]:
                rows.setdefault(r[0].lower(), (r[0].lower(), *r[1:]))
    create = ("CREATE TABLE bare_lead (email TEXT PRIMARY KEY, first_name TEXT, "
              "last_name TEXT, company TEXT, timezone TEXT, plan TEXT)")
    if kind == "sqlite":
        import sqlite3

        conn = sqlite3.connect(url.split(":///", 1)[1])
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")  # as nurture's own connections
        with conn:
            conn.execute(create)
            conn.executemany("INSERT INTO bare_lead VALUES (?, ?, ?, ?, ?, ?)", rows.values())
        conn.close()
    else:
        import psycopg

        with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as conn:
            conn.execute(create)
            with conn.cursor() as cur:
                cur.executemany("INSERT INTO bare_lead VALUES (%s, %s, %s, %s, %s, %s)",
                                list(rows.values()))
    return Timing(time.perf_counter() - start, time.process_time() - cpu)


def run(kind: str, csv_path: Path, expected: dict[str, int]) -> dict[str, object]:
    with database(kind) as url, tempfile.TemporaryDirectory(prefix="nurture-bench-") as tmp:
        project = Project(Path(tmp), url, smtp_port=1)
        project.nurture("db", "upgrade")
        start_up = nurture_process(project, "version")
        ours = nurture_process(project, "import", SEQUENCE, str(csv_path))
    counts = _counts(ours.output)
    if counts != expected:
        raise RuntimeError(f"{kind}: nurture import reported {counts}, expected {expected}")
    with database(kind) as url:
        bare = bare_insert(kind, url, csv_path)
    result = {"db": kind, "import_s": ours.wall, "import_cpu_s": ours.cpu,
              "import_rss_mb": ours.rss_mb, "start_s": start_up.wall, "start_cpu_s": start_up.cpu,
              "bare_s": bare.wall, "bare_cpu_s": bare.cpu, "ratio": bare.wall / ours.wall,
              "cpu_ratio": bare.cpu / ours.cpu}
    print(json.dumps(result), file=sys.stderr)
    return result


def _counts(output: str) -> dict[str, int]:
    found = re.search(r"(\d+) enrolled, (\d+) already active \(merged\), (\d+) duplicate rows "
                      r"merged, (\d+) rejected", output)
    if not found:
        raise RuntimeError(f"no summary line in the import's output: {output[-1000:]}")
    return dict(zip(("enrolled", "already", "duplicates", "rejected"),
                    map(int, found.groups()), strict=True))


def report(results: list[dict[str, object]], rows: int, bad: int, repeats: int,
           started: str) -> str:
    lines = "\n".join(
        f"| {r['db']} | {rows:,} | {r['import_s']:.1f} | {r['import_cpu_s']:.1f} | "
        f"{rows / float(r['import_s']):,.0f} | {r['import_rss_mb']:.0f} | "  # type: ignore[arg-type]
        f"{r['start_s']:.1f} / {r['start_cpu_s']:.1f} | "
        f"{r['bare_s']:.2f} / {r['bare_cpu_s']:.2f} | "
        f"{r['ratio']:.3f} / {r['cpu_ratio']:.3f} |" for r in results)
    return f"""\
`python bench/import_csv.py --rows {rows}` on {started}. A generated CSV of {rows:,} leads
(email, first and last name, company, time zone, a custom field `plan`), of which {bad:,} are
not an address (rejected with their line) and {repeats:,} repeat an earlier address (merged).
`nurture import {SEQUENCE} leads.csv` runs as a user runs it: its own process, after
`nurture db upgrade`, progress bar on, on a fresh database; its summary line is checked.
Wall and CPU include the interpreter's start (`nurture version`, timed the same way, shows
that fixed cost). Baseline, same run: the same file read with the csv module and the
distinct valid rows written by one bare `executemany` INSERT (sqlite3 / psycopg, one
transaction, no validation, no enrollment, no first-touch planning; its CPU is the bench
process's, not the server's); ratio = baseline / import, wall and CPU. On a loaded machine
wall is several times CPU: CPU is the steadier number. Target (issue 3): 100k rows "well
under a minute".

| database | rows | import wall s | import CPU s | rows/s (wall) | peak RSS MB \
| start-up wall / CPU s | bare executemany wall / CPU s | ratio wall / CPU |
|---|---|---|---|---|---|---|---|---|
{lines}
"""


def main(argv: list[str] | None = None) -> str:
    ap = parser(__doc__)
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--quick", action="store_true", help="10,000 rows")
    args = ap.parse_args(argv)
    if args.quick:
        args.rows = 10_000
    started = machine()
    dbs = kinds(args.db)
    with tempfile.TemporaryDirectory(prefix="nurture-bench-") as tmp:
        csv_path = Path(tmp) / "leads.csv"
        bad, repeats = write_csv(csv_path, args.rows)
        expected = {"enrolled": args.rows - bad - repeats, "already": 0,
                    "duplicates": repeats, "rejected": bad}
        results = [run(kind, csv_path, expected) for kind in dbs]
    text = report(results, args.rows, bad, repeats, started)
    print(text)
    if args.write:
        write_section("import_csv", "`nurture import` of a large CSV", text)
    return text


if __name__ == "__main__":
    main()
