"""The marketer's numbers tell a bounce from a failure and an email from a task, on SQLite and
PostgreSQL, in the store, `nurture stats --json` and the /stats page: a real SMTP sink refuses
one address (550 5.1.1), one lead lacks the field its template needs, one call is done."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from engine.app import App
from tests.integration.test_web_pages import csrf
from tests.servers.smtp_sink import Faults, SmtpSink
from tests.servers.web_app import REPS, auth, make_app, send_due_now, served, web_app, web_settings

SEQUENCE = """\
name: trial
mailbox: sales
timezone: UTC
jitter: 0m
sample_lead: {first_name: Ada, plan: pro}
steps:
  - name: welcome
    after: 0m
    send_window: any
    email: {template: welcome.md.j2}
  - name: ring
    after: 0m
    send_window: any
    task: {kind: call, note: "Call {{ lead.first_name }}"}
"""
TEMPLATE = ("---\nsubject: Your {{ lead.plan }} trial\n---\nHi {{ lead.first_name }}.\n\n"
            "{{ unsubscribe_url }} {{ sender.postal_address }}\n")



@pytest.fixture
def app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, db_url: str) -> Iterator[App]:
    """ada was sent the welcome and her call is done; bob's welcome could not render (no
    `plan`); gone@bad.example's was refused at RCPT."""
    (tmp_path / "sequences").mkdir()
    (tmp_path / "sequences" / "trial.yaml").write_text(SEQUENCE)
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "welcome.md.j2").write_text(TEMPLATE)
    with SmtpSink(Faults(reject=("@bad.example",))) as sink:
        app = make_app(web_settings(tmp_path, monkeypatch, url=db_url, smtp_port=sink.port,
                                    sequences_dir=tmp_path / "sequences",
                                    templates_dir=tmp_path / "templates"))
        enroller = app.enroller()
        enroller.enroll("trial", "ada@example.com", {"first_name": "Ada", "plan": "pro"})
        enroller.enroll("trial", "bob@example.com", {"first_name": "Bob"})
        enroller.enroll("trial", "gone@bad.example", {"first_name": "Gus", "plan": "pro"})
        send_due_now(app)
        assert len(sink.received) == 1
        [call] = app.store.reports.open_tasks()
        app.tasks.complete(call.id, "sam")
        try:
            yield app
        finally:
            app.store.close()


def test_a_render_failure_is_failed_a_refusal_bounced_a_call_a_task(app: App) -> None:
    """welcome: 1 sent, 1 bounced (550), 1 failed (render); ring: 1 task done, 0 sent."""
    [trial] = app.store.stats.sequences()
    welcome, ring = trial.steps
    assert (welcome.sent, welcome.bounced, welcome.failed) == (1, 1, 1)
    assert (ring.sent, ring.tasks_done, ring.bounced, ring.failed) == (0, 1, 0, 0)
    totals = trial.totals
    assert (totals.sent, totals.tasks_done, totals.bounced, totals.failed) == (1, 1, 1, 1)
    assert totals.contacted == 1


def test_the_stats_page_and_its_json_show_failed_apart(app: App) -> None:
    """/stats JSON carries `failed` and `tasks_done`; the page has the columns."""
    with served(web_app(app)) as url, httpx.Client(base_url=url) as client:
        [trial] = client.get("/stats", headers={**auth(), "Accept": "application/json"}).json()
        r = client.post("/reps/login", data={"name": "ada", "password": REPS["ada"],
                                             "csrf": csrf(client.get("/reps/login").text)})
        assert r.status_code == 303
        page = client.get("/stats").text
    totals = trial["totals"]
    assert (totals["sent"], totals["tasks_done"], totals["bounced"], totals["failed"]) == (
        1, 1, 1, 1)
    header = re.findall(r"<th>([^<]+)</th>", page.split("</thead>")[0])
    total_row = page.split('<tr class="total">')[1].split("</tr>")[0]
    cells = dict(zip(header[1:], re.findall(r"<td>([^<]*)</td>", total_row), strict=True))
    assert (cells["Sent"], cells["Tasks done"], cells["Bounced"], cells["Failed"]) == (
        "1", "1", "1", "1")
