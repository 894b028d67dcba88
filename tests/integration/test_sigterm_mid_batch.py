"""SIGTERM in the middle of a batch: `nurture run` finishes the SMTP transactions in flight,
records them, hands back the claims it had not started and exits 0; the next run sends those
once (a real process, a slow aiosmtpd sink in its own process, SQLite)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from tests.servers.nurture_proc import Project, record_count
from tests.servers.polling import wait_until
from tests.servers.smtp_sink import SinkProcess

LEADS = 100

pytestmark = pytest.mark.slow


def test_sigterm_mid_batch_hands_back_what_was_not_started(tmp_path: Path) -> None:
    """One batch of 100 due touches over a slow relay; SIGTERM once the first few arrived:
    exit 0 with most of the batch unsent, every recorded send at the relay, the rest due
    again (claimed by nobody, not in doubt); a second run sends them, each exactly once."""
    with SinkProcess(tmp_path / "sink.jsonl", faults="slow=0.05") as sink:
        project = Project(tmp_path, f"sqlite:///{tmp_path / 'nurture.db'}", sink.port,
                          steps=1, connections=2, batch_size=LEADS)
        project.nurture("db", "upgrade")
        project.import_leads(f"lead{i}@example.com" for i in range(LEADS))
        daemon = project.start("w1")
        wait_until(lambda: record_count(sink.record) >= 3, 60, "the first sends")
        assert daemon.terminate(timeout=60) == 0
        first = Counter(m["message_id"] for m in sink.messages())
        after_stop = project.touches()
        project.nurture("run", "--once")
        final = Counter(m["message_id"] for m in sink.messages())
    sent = {t.message_id for t in after_stop if t.state == "sent"}
    rest = [t for t in after_stop if t.state != "sent"]
    assert len(first) < LEADS // 2, "the whole batch went out after SIGTERM"
    assert set(first) == sent  # every accepted message recorded, nothing else marked sent
    assert {(t.state, t.claimed_by) for t in rest} == {("claimed", "")}  # due, not in doubt
    assert daemon.events("claims_handed_back")
    assert final == Counter({t.message_id: 1 for t in project.touches()})
    assert len(final) == LEADS and {t.state for t in project.touches()} == {"sent"}
