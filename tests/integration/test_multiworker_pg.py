"""Four `nurture run` processes on one PostgreSQL database share 2,000 leads' touches.

Claims use FOR UPDATE SKIP LOCKED; an import in another process wakes every worker through
NOTIFY. The sink runs in a process of its own and records every accepted Message-ID; the
touches table says which worker sent what.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from tests.servers.nurture_proc import Project
from tests.servers.polling import wait_until
from tests.servers.smtp_sink import SinkProcess

LEADS = 2000
WORKERS = [f"worker-{i}" for i in range(1, 5)]

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


def _sent(project: Project) -> int:
    [(n,)] = project.query("SELECT count(*) FROM touch WHERE state = 'sent'")
    return int(n)


def test_four_workers_send_each_touch_exactly_once_and_share_the_work(
    tmp_path: Path, pg_url: str,
) -> None:
    """2,000 leads imported while four workers run: 2,000 touches, each Message-ID once at
    the relay, every worker sent a share, and each stops cleanly (exit 0) on SIGTERM."""
    with SinkProcess(tmp_path / "sink.jsonl") as sink:
        project = Project(tmp_path, pg_url, sink.port, steps=1)
        project.nurture("db", "upgrade")
        daemons = [project.start(name) for name in WORKERS]
        try:
            wait_until(lambda: len(project.query("SELECT name FROM worker")) == len(WORKERS),
                       60, "four registered workers")
            project.import_leads(f"lead{i}@example.com" for i in range(LEADS))
            wait_until(lambda: _sent(project) == LEADS, 150, f"{LEADS} sent touches", every=0.2)
        finally:
            codes = [d.terminate() for d in daemons]
        received = Counter(m["message_id"] for m in sink.messages())
    touches = project.touches()
    per_worker = Counter(t.claimed_by for t in touches)
    assert codes == [0] * len(WORKERS)
    assert len(touches) == LEADS and {t.state for t in touches} == {"sent"}
    assert received == Counter({t.message_id: 1 for t in touches})
    assert set(per_worker) == set(WORKERS), per_worker
