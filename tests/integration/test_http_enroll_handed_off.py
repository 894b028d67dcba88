"""The API refuses to enroll a lead who replied while a rep works them: 409 with
`{"error", "field"}`; once the handoff is closed the same request enrolls (real SQLite)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import insert, update

from engine.app import App
from engine.store.tables import Enrollment, Handoff
from engine.web.state import Runtime
from tests.servers.web_app import auth, make_app, served, web_app, web_settings

ENROLL = {"email": "ada@example.com", "sequence": "demo-request", "first_name": "Ada"}


@pytest.fixture
def app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> App:
    return make_app(web_settings(tmp_path, monkeypatch))


@pytest.fixture
def client(app: App) -> Iterator[httpx.Client]:
    with served(web_app(app, Runtime(wake=lambda: None))) as url, \
            httpx.Client(base_url=url) as c:
        yield c


def hand_off(app: App) -> int:
    """The enrolled lead replied: its enrollment handed off, a handoff open."""
    lead = app.store.leads.get("ada@example.com")
    assert lead is not None
    with app.store.db.write() as conn:
        conn.execute(update(Enrollment.__table__).values(state="handed_off",
                                                         next_due_at=None))
        return int(conn.execute(insert(Handoff.__table__).returning(Handoff.__table__.c.id)
                                .values(lead_id=lead.id, sequence="demo-request", rep="",
                                        state="open", outcome="", note="",
                                        created_at=app.clock.now())).scalar_one())


def test_enrolling_a_lead_with_a_rep_is_a_conflict(client: httpx.Client, app: App) -> None:
    """409, the reason in `error`, `field: email`; the lead is not enrolled again."""
    assert client.post("/api/leads/enroll", json=ENROLL, headers=auth()).status_code == 201
    hid = hand_off(app)
    r = client.post("/api/leads/enroll", json=ENROLL, headers=auth())
    assert r.status_code == 409
    body = r.json()
    assert body["field"] == "email" and f"handoff {hid} open" in body["error"]
    assert [e["state"] for e in app.store.reports.enrollments()] == ["handed_off"]


def test_after_the_handoff_is_closed_the_api_enrolls(client: httpx.Client, app: App) -> None:
    """The rep closed it (lost): the same request enrolls the lead again (201)."""
    client.post("/api/leads/enroll", json=ENROLL, headers=auth())
    hid = hand_off(app)
    app.handoffs().close(hid, "lost", by="sam")
    assert client.post("/api/leads/enroll", json=ENROLL, headers=auth()).status_code == 201
