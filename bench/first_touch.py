"""Enroll -> first touch accepted by SMTP, with the daemon running in a process of its own.

A real `nurture run` (SQLite file or PostgreSQL) sends to an aiosmtpd sink in this process.
Leads are enrolled from this process, one at a time, the way `nurture enroll`, `nurture
import` or any other program sharing the database does: through the Enroller, so the daemon
learns of them as it would in production (PostgreSQL: NOTIFY; SQLite: what the daemon
watches). Latency = just before the enroll call -> the sink's 250 for that lead's first
email. The HTTP path (the daemon's own API wakes its dispatcher in-process) is measured by
bench/http_enroll.py. Target: p50 < 250 ms.

    python bench/first_touch.py                      # SQLite and PostgreSQL, 50 leads each
    python bench/first_touch.py --quick              # 15 leads each
    python bench/first_touch.py --write              # and update bench/README.md
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

from benchlib import database, kinds, machine, parser, pct, write_section  # first: sys.path

from engine.app import App
from engine.settings import Settings
from tests.servers.nurture_proc import SEQUENCE, Project
from tests.servers.polling import wait_until
from tests.servers.smtp_sink import SmtpSink

GAP = 0.2  # seconds between enrollments: each lead finds the daemon idle, as a web lead does


def arrival(sink: SmtpSink, email: str, timeout: float = 30.0) -> float:
    """When the sink accepted the first message to `email` (a condition poll)."""
    found: list[float] = []

    def arrived() -> bool:
        found.extend(m.at for m in sink.received if email in m.rcpt)
        return bool(found)
    wait_until(arrived, timeout, f"the first email to {email}", every=0.001)
    return found[0]


def run(kind: str, leads: int) -> list[float]:
    with SmtpSink() as sink, database(kind) as url, \
            tempfile.TemporaryDirectory(prefix="nurture-bench-") as tmp:
        project = Project(Path(tmp), url, sink.port, steps=2, heartbeat=10)
        project.nurture("db", "upgrade")
        daemon = project.start()
        try:
            wait_until(lambda: bool(daemon.events("daemon_started")) or not daemon.alive, 60,
                       "the daemon to start")
            enroller = App(Settings.load(project.config, secret_key="bench")).enroller()
            latencies = []
            for i in range(-3, leads):  # three to warm up: connections, caches
                time.sleep(GAP)
                email = f"lead{i + 3}@example.com"
                start = time.time()
                enroller.enroll(SEQUENCE, email, {"first_name": "Bench"}, source="bench")
                if i >= 0:
                    latencies.append(arrival(sink, email) - start)
        finally:
            code = daemon.terminate()
        if code != 0:
            raise RuntimeError(f"the daemon exited {code}: {daemon.log.read_text()[-2000:]}")
    ms = [x * 1000 for x in latencies]
    print(json.dumps({"db": kind, "p50": pct(ms, 50)}), file=sys.stderr)
    return ms


def report(results: dict[str, list[float]], leads: int, started: str) -> str:
    rows = "\n".join(
        f"| {kind} | {len(ms)} | {pct(ms, 50):.0f} | {pct(ms, 90):.0f} | {max(ms):.0f} |"
        for kind, ms in results.items())
    return f"""\
`python bench/first_touch.py --leads {leads}` on {started}. A real `nurture run` process
(default settings: two SMTP connections, heartbeat 10 s) sends to an aiosmtpd sink in the
bench process; the bench enrolls one lead every {GAP:.1f} s through the Enroller from its own
process (as `nurture enroll`, `nurture import` or another program sharing the database
would), so the daemon learns of it the production way (PostgreSQL: LISTEN/NOTIFY; SQLite:
see below). Latency = just before the enroll call -> the sink's 250 for the lead's first
email (first step `after: 0m`). Target: p50 < 250 ms.

| database | leads | p50 ms | p90 ms | max ms |
|---|---|---|---|---|
{rows}
"""


def main(argv: list[str] | None = None) -> str:
    ap = parser(__doc__)
    ap.add_argument("--leads", type=int, default=50)
    ap.add_argument("--quick", action="store_true", help="15 leads")
    args = ap.parse_args(argv)
    if args.quick:
        args.leads = 15
    started = machine()
    dbs = kinds(args.db)
    text = report({k: run(k, args.leads) for k in dbs}, args.leads, started)
    print(text)
    if args.write:
        write_section("first_touch", "Enroll -> first touch, daemon in its own process", text)
    return text


if __name__ == "__main__":
    main()
