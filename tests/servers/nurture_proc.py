"""`nurture` as real processes for fault tests and benchmarks: a project directory (config,
one sequence, its templates), the CLI as a subprocess, `nurture run` daemons that can be
SIGKILLed, and a read-only look at the touches table.

    project = Project(tmp_path, db_url, smtp_port=sink.port, steps=2)
    project.nurture("db", "upgrade"); project.import_leads(emails)
    daemon = project.start("w1"); ...; daemon.kill() / daemon.terminate()
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parents[2]
SEQUENCE = "burst"
SECRET = "proc-test-secret"
FOOTER = "\n{{ sender.postal_address }}. Unsubscribe: <{{ unsubscribe_url }}>\n"
TEMPLATES = {
    "first.md.j2": "---\nsubject: \"Hello {{ lead.first_name }}\"\n---\n"
                   "Hi {{ lead.first_name }},\n\nA short note from {{ sender.name }}.\n" + FOOTER,
    "next.md.j2": "---\nsubject: \"Next\"\n---\nStep {{ step.name }} for {{ lead.email }}.\n"
                  + FOOTER,
}


@dataclass(frozen=True)
class TouchFact:
    id: int
    enrollment_id: int
    step_index: int
    state: str
    message_id: str
    claimed_by: str


class Daemon:
    """One `nurture run` process; its log (JSON lines) goes to a file."""

    def __init__(self, proc: subprocess.Popen[bytes], log: Path) -> None:
        self.proc, self.log = proc, log

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: no handler runs, nothing is flushed or handed back."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def terminate(self, timeout: float = 60) -> int:
        """SIGTERM and wait for the graceful exit; the exit code."""
        if self.alive:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def events(self, name: str) -> list[dict[str, Any]]:
        out = []
        for line in self.log.read_text(errors="replace").splitlines():
            if f'"{name}"' in line:
                with contextlib.suppress(ValueError):  # a line cut short by SIGKILL
                    out.append(json.loads(line))
        return out


class Project:
    """A nurture project in `root`: nurture.yaml, sequences/burst.yaml, templates/."""

    def __init__(self, root: Path, db_url: str, smtp_port: int, *, steps: int = 1,
                 in_doubt: str = "hold", connections: int = 2, heartbeat: int = 1,
                 imap: dict[str, Any] | None = None, env: dict[str, str] | None = None,
                 batch_size: int = 100) -> None:
        self.root, self.db_url = root, db_url
        self.extra_env = env or {}
        self.runs = 0
        root.mkdir(parents=True, exist_ok=True)
        (root / "sequences").mkdir(exist_ok=True)
        (root / "templates").mkdir(exist_ok=True)
        for name, body in TEMPLATES.items():
            (root / "templates" / name).write_text(body)
        (root / "sequences" / f"{SEQUENCE}.yaml").write_text(json.dumps(_sequence(steps,
                                                                                  in_doubt)))
        mailbox: dict[str, Any] = {
            "address": "sales@example.com", "from_name": "Sam Rivera",
            "daily_limit": 10_000_000, "per_minute_limit": 10_000_000,
            "smtp": {"host": "127.0.0.1", "port": smtp_port, "tls": "none", "timeout": 10,
                     "connections": connections},
        }
        if imap is not None:
            mailbox["imap"] = imap
        (root / "nurture.yaml").write_text(json.dumps({
            "database_url": db_url, "sequences_dir": str(root / "sequences"),
            "templates_dir": str(root / "templates"), "base_url": "https://nurture.example.com",
            "postal_address": "1 Main Street", "http_port": 0, "log_format": "json",
            "heartbeat_seconds": heartbeat, "batch_size": batch_size,
            "mailboxes": {"sales": mailbox},
        }))

    @property
    def config(self) -> Path:
        return self.root / "nurture.yaml"

    def env(self, worker: str = "") -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("NURTURE_")}
        env.update(PYTHONPATH=str(ROOT), COLUMNS="250", NURTURE_SECRET_KEY=SECRET,
                   NURTURE_CONFIG=str(self.config), **self.extra_env)
        if worker:
            env["NURTURE_WORKER_NAME"] = worker
        return env

    def nurture(self, *args: str, timeout: float = 120) -> str:
        """Run a CLI command to completion; its stdout (a failure raises with stderr)."""
        done = subprocess.run(_cmd(*args), cwd=self.root, env=self.env(), capture_output=True,
                              text=True, timeout=timeout, check=False)
        if done.returncode != 0 or "Traceback" in done.stderr:
            raise AssertionError(f"nurture {' '.join(args)} exited {done.returncode}:\n"
                                 f"{done.stderr[-3000:]}\n{done.stdout[-2000:]}")
        return done.stdout

    def import_leads(self, emails: Iterable[str]) -> str:
        path = self.root / f"leads-{time.monotonic_ns()}.csv"
        with path.open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["email", "first_name"])
            w.writerows((e, e.split("@")[0]) for e in emails)
        return self.nurture("import", SEQUENCE, str(path))

    def start(self, worker: str = "") -> Daemon:
        """`nurture run` in the background (returns at once)."""
        self.runs += 1
        log = self.root / f"run-{self.runs}{'-' + worker if worker else ''}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(_cmd("run"), cwd=self.root, env=self.env(worker),
                                    stdout=out, stderr=subprocess.STDOUT)
        return Daemon(proc, log)

    # --- looking at the database (read only) ---------------------------------------------

    def query(self, sql: str, **params: Any) -> list[Any]:
        engine = create_engine(self.db_url.replace("postgresql://", "postgresql+psycopg://"))
        try:
            with engine.connect() as conn:
                return list(conn.execute(text(sql), params))
        finally:
            engine.dispose()

    def touches(self) -> list[TouchFact]:
        return [TouchFact(*r) for r in self.query(
            "SELECT id, enrollment_id, step_index, state, message_id, claimed_by FROM touch "
            "ORDER BY id")]

    def enrollment_states(self) -> dict[str, int]:
        return dict(self.query("SELECT state, count(*) FROM enrollment GROUP BY state"))


def record_count(path: Path) -> int:
    """Messages the subprocess sink has accepted so far (lines of its record)."""
    try:
        with path.open("rb") as f:
            return f.read().count(b"\n")
    except FileNotFoundError:
        return 0


def _sequence(steps: int, in_doubt: str) -> dict[str, Any]:
    first = {"name": "s1", "after": "0m", "send_window": "any",
             "email": {"template": "first.md.j2"}}
    rest = [{"name": f"s{i}", "after": "0m", "send_window": "any",
             "email": {"template": "next.md.j2", "thread": "previous"}}
            for i in range(2, steps + 1)]
    return {"name": SEQUENCE, "mailbox": "sales", "timezone": "UTC", "jitter": "0m",
            "in_doubt": in_doubt, "sample_lead": {"first_name": "Ada"},
            "steps": [first, *rest]}


def _cmd(*args: str) -> list[str]:
    return [sys.executable, "-c", "from engine.cli.main import main; main()", *args]
