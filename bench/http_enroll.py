"""Speed to lead, end to end: enroll over HTTP -> the first touch accepted by an SMTP sink.

Starts a real `nurture run` (a separate process: scheduler + HTTP server), an aiosmtpd sink
in this process, and enrolls leads through POST /api/leads/enroll, measuring for each lead
the time from the request to the sink's 250 for its first email. Two scenarios:
  sequential: one lead at a time (the latency a web form's lead sees);
  burst:      all leads posted by --clients concurrent clients (a CSV-like surge).

    python bench/http_enroll.py                      # SQLite and PostgreSQL, 200 leads each
    python bench/http_enroll.py --db sqlite --leads 50
    python bench/http_enroll.py --append             # add the results to bench/README.md

PostgreSQL: NURTURE_TEST_PG (default postgresql://postgres@127.0.0.1:5432/postgres); a
database is created for the run and dropped afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from benchlib import kinds, parser  # noqa: E402

from tests.servers.smtp_sink import SmtpSink  # noqa: E402

PG_ADMIN = os.environ.get("NURTURE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
TOKEN = "bench-token"


@dataclass
class Result:
    db: str
    scenario: str
    latencies: list[float]  # seconds, enroll request -> 250 at the sink
    responses: list[float]  # seconds, HTTP round trip of the enroll request

    def line(self) -> str:
        lat, rsp = _ms(self.latencies), _ms(self.responses)
        return (f"| {self.db} | {self.scenario} | {len(self.latencies)} | "
                f"{_pct(lat, 50)} | {_pct(lat, 90)} | {_pct(lat, 99)} | {max(lat):.0f} | "
                f"{_pct(rsp, 50)} | {_pct(rsp, 99)} |")


def _ms(values: list[float]) -> list[float]:
    return [v * 1000 for v in values]


def _pct(values: list[float], p: int) -> str:
    if len(values) < 2:
        return f"{values[0]:.0f}" if values else "-"
    return f"{statistics.quantiles(values, n=100, method='inclusive')[p - 1]:.0f}"


# --- the engine under test -------------------------------------------------------------------

@contextmanager
def database(kind: str) -> Iterator[str]:
    if kind == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            yield f"sqlite:///{tmp}/bench.db"
        return
    import psycopg

    name = f"nurture_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield f"{PG_ADMIN.rsplit('/', 1)[0]}/{name}"
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def daemon(url: str, sink_port: int, workdir: Path) -> Iterator[str]:
    """`nurture run` on the repo's example sequences; yields its base URL once healthy."""
    (workdir / "nurture.yaml").write_text(json.dumps({
        "database_url": url, "sequences_dir": str(ROOT / "sequences"),
        "templates_dir": str(ROOT / "templates"), "base_url": "http://127.0.0.1",
        "http_port": 0, "log_format": "json", "postal_address": "1 Bench Street",
        "mailboxes": {"sales": {
            "address": "sales@bench.example.com", "from_name": "Bench",
            "daily_limit": 1_000_000, "per_minute_limit": 1_000_000,
            "smtp": {"host": "127.0.0.1", "port": sink_port, "tls": "none"}}},
    }))
    env = {**os.environ, "NURTURE_SECRET_KEY": "bench-secret", "NURTURE_API_TOKEN": TOKEN,
           "NURTURE_CONFIG": str(workdir / "nurture.yaml")}
    nurture = [sys.executable, "-c", "from engine.cli.main import main; main()"]
    subprocess.run([*nurture, "db", "upgrade"], env=env, cwd=workdir, check=True,
                   capture_output=True)
    proc = subprocess.Popen([*nurture, "run"], env=env, cwd=workdir, text=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        yield _listening(proc)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


def _listening(proc: subprocess.Popen[str]) -> str:
    assert proc.stderr is not None
    for line in proc.stderr:
        if '"http_listening"' in line:
            threading.Thread(target=proc.stderr.read, daemon=True).start()  # keep draining
            base = json.loads(line)["url"]
            httpx.get(f"{base}/healthz", timeout=10).raise_for_status()
            return base
    raise RuntimeError(f"the daemon exited with {proc.wait()} before serving HTTP")


# --- measuring -------------------------------------------------------------------------------

def arrival(sink: SmtpSink, email: str, timeout: float = 30.0) -> float:
    """When the sink accepted the first message to `email` (polls the sink's record)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for m in sink.received:
            if email in m.rcpt:
                return m.at
        time.sleep(0.001)
    raise TimeoutError(f"no email reached {email} within {timeout:.0f} s")


def enroll_one(http: httpx.Client, sink: SmtpSink, email: str) -> tuple[float, float]:
    start = time.time()
    r = http.post("/api/leads/enroll", headers={"Authorization": f"Bearer {TOKEN}"},
                  json={"email": email, "sequence": "demo-request", "first_name": "Bench"})
    responded = time.time()
    r.raise_for_status()
    return arrival(sink, email) - start, responded - start


def run(kind: str, leads: int, clients: int) -> list[Result]:
    results = []
    with SmtpSink() as sink, database(kind) as url, tempfile.TemporaryDirectory() as tmp, \
            daemon(url, sink.port, Path(tmp)) as base, httpx.Client(base_url=base) as http:
        for i in range(5):  # warm up: SMTP connection, first queries, imports
            enroll_one(http, sink, f"warm{i}@bench.example.com")
        seq = [enroll_one(http, sink, f"seq{i}@bench.example.com") for i in range(leads)]
        results.append(Result(kind, "sequential", [s[0] for s in seq], [s[1] for s in seq]))
        with ThreadPoolExecutor(clients) as pool:
            burst = list(pool.map(lambda i: enroll_one(http, sink, f"burst{i}@bench.example.com"),
                                  range(leads)))
        results.append(Result(kind, f"burst x{clients}", [b[0] for b in burst],
                              [b[1] for b in burst]))
    return results


HEADER = ("| database | scenario | leads | p50 ms | p90 ms | p99 ms | max ms | "
          "HTTP p50 ms | HTTP p99 ms |\n|---|---|---|---|---|---|---|---|---|")


def main() -> None:
    ap = parser(__doc__, write=False)
    ap.add_argument("--leads", type=int, default=200)
    ap.add_argument("--clients", type=int, default=16, help="concurrent clients in the burst")
    ap.add_argument("--append", action="store_true", help="append to bench/README.md")
    args = ap.parse_args()
    dbs = kinds(args.db)
    lines = [r.line() for kind in dbs for r in run(kind, args.leads, args.clients)]
    report = "\n".join([HEADER, *lines])
    print(report)
    if args.append:
        _append(report, args)


def _append(report: str, args: argparse.Namespace) -> None:
    readme = ROOT / "bench" / "README.md"
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    text = readme.read_text() if readme.exists() else "# Benchmarks\n"
    text += (f"\n## Speed to lead over HTTP ({time.strftime('%Y-%m-%d')})\n\n"
             f"`python bench/http_enroll.py --leads {args.leads} --clients {args.clients}` on "
             f"{machine}: a real `nurture run` process (its HTTP task and dispatcher), the "
             "repository's `demo-request` sequence (first touch `after: 0m`), an aiosmtpd sink "
             "on 127.0.0.1. Latency = POST /api/leads/enroll sent -> the sink's 250 for that "
             "lead's first email. Target: p50 < 250 ms, p99 < 1 s.\n\n"
             f"{report}\n")
    readme.write_text(text)


if __name__ == "__main__":
    main()
