"""Shared by the bench scripts: databases made for a run, percentiles, the machine line, RSS,
and writing one script's section of bench/README.md without touching the others'."""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

PG_ADMIN = os.environ.get("NURTURE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
README = ROOT / "bench" / "README.md"
DATABASES = ("sqlite", "postgres")


def parser(doc: str, *, db: str | None = "both", write: bool = True) -> argparse.ArgumentParser:
    """The options the bench scripts share: --db (default `db`; none when None) and --write;
    the description is the docstring's first paragraph."""
    ap = argparse.ArgumentParser(description=" ".join(doc.split("\n\n")[0].split()))
    if db is not None:
        ap.add_argument("--db", choices=[*DATABASES, "both"], default=db)
    if write:
        ap.add_argument("--write", action="store_true", help="update bench/README.md")
    return ap


def kinds(db: str) -> list[str]:
    """The databases a --db value names."""
    return list(DATABASES) if db == "both" else [db]


@contextmanager
def database(kind: str) -> Iterator[str]:
    """A fresh database URL for one run: an SQLite file, or a PostgreSQL database dropped after."""
    if kind == "sqlite":
        with tempfile.TemporaryDirectory(prefix="nurture-bench-") as tmp:
            yield f"sqlite:///{tmp}/bench.db"
        return
    import psycopg

    name = f"nurture_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield f"{PG_ADMIN.rsplit('/', 1)[0]}/{name}".replace(
                "postgresql://", "postgresql+psycopg://", 1)
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def pct(values: list[float], p: float) -> float:
    """The p-th percentile (inclusive method); the value itself for a single sample."""
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(p) - 1]


def machine() -> str:
    load = os.getloadavg()[0]
    return (f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
            f"load average {load:.1f} at the start")


def rss_mb() -> tuple[float, float]:
    """(current, peak) resident set size of this process in MB."""
    current = peak = 0.0
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                current = int(line.split()[1]) / 1024
            elif line.startswith("VmHWM:"):
                peak = int(line.split()[1]) / 1024
    return current, peak


def git_head() -> str:
    """The checked-out commit, short (git itself: in a worktree `.git` is a file)."""
    out = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short=7", "HEAD"],
                         capture_output=True, text=True, check=False)
    return out.stdout.strip() or "?"


def write_section(key: str, title: str, body: str) -> None:
    """Put `## title` + body in bench/README.md between this script's markers (replacing the
    previous run's), leaving every other section as it is."""
    begin, end = f"<!-- bench:{key} -->", f"<!-- /bench:{key} -->"
    block = (f"{begin}\n## {title} ({time.strftime('%Y-%m-%d')}, commit {git_head()})\n\n"
             f"{body.strip()}\n{end}")
    text = README.read_text() if README.exists() else "# Benchmarks\n"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.DOTALL)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else (
        text.rstrip("\n") + "\n\n" + block + "\n")
    README.write_text(text if text.endswith("\n") else text + "\n")
