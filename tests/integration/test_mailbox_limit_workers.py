"""Three `nurture run` processes on one PostgreSQL database share one mailbox's per-minute
limit: the relay never receives more than the limit in any minute (counts only; the sink
runs in a process of its own and stamps each message it accepts)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.servers.nurture_proc import Project, record_count
from tests.servers.polling import wait_until
from tests.servers.smtp_sink import SinkProcess

LIMIT = 5
LEADS = 30
WORKERS = ("w1", "w2", "w3")

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


def _limit_mailbox(project: Project, per_minute: int) -> None:
    config = json.loads(project.config.read_text())
    config["mailboxes"]["sales"]["per_minute_limit"] = per_minute
    project.config.write_text(json.dumps(config))


def busiest_minute(stamps: list[float]) -> int:
    """The most messages accepted within any 60 seconds."""
    stamps = sorted(stamps)
    return max((sum(1 for s in stamps[i:] if s < t + 60) for i, t in enumerate(stamps)),
               default=0)


def test_workers_together_stay_within_the_per_minute_limit(tmp_path: Path,
                                                           pg_url: str) -> None:
    """30 leads imported while three idle workers wait (a NOTIFY wakes all at once), over a
    slow relay: once every worker has seen the limit reached, the relay holds exactly the
    limit, and no 60 s window of its acceptance times has more."""
    with SinkProcess(tmp_path / "sink.jsonl", faults="slow=0.2") as sink:
        project = Project(tmp_path, pg_url, sink.port, steps=1, heartbeat=1)
        _limit_mailbox(project, LIMIT)
        project.nurture("db", "upgrade")
        daemons = [project.start(name) for name in WORKERS]
        try:
            wait_until(lambda: len(project.query("SELECT name FROM worker")) == len(WORKERS),
                       60, "three registered workers")
            project.import_leads(f"lead{i}@example.com" for i in range(LEADS))
            wait_until(lambda: record_count(sink.record) >= LIMIT
                       and all(d.events("mailbox_limit_reached") for d in daemons), 60,
                       "every worker held back by the limit")
        finally:
            codes = [d.terminate() for d in daemons]
        stamps = [m["at"] for m in sink.messages()]
    sent = [t for t in project.touches() if t.state == "sent"]
    assert codes == [0] * len(WORKERS)
    assert busiest_minute(stamps) == LIMIT, f"{len(stamps)} accepted: {sorted(stamps)}"
    assert len(sent) == len(stamps)  # what the relay accepted is what is recorded sent
