"""Migration 0004 (steps by name) on a database that already has enrollments and touches,
on SQLite and PostgreSQL: in-flight touches keep advancing their enrollment, and touches an
edited sequence already duplicated (the bug) are kept under a new name."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import MetaData, insert, select

from engine.store.store import Store
from engine.store.tables import Enrollment, Touch

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
E, T = Enrollment.__table__, Touch.__table__


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def old_store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    """A database at revision 0003 with two enrollments and their touches."""
    url = (f"sqlite:///{tmp_path / 's.db'}" if request.param == "sqlite"
           else str(request.getfixturevalue("pg_url")))
    s = Store(url)
    request.addfinalizer(s.close)
    s.db.upgrade("0003")
    with s.db.engine.begin() as conn:
        old = MetaData()
        old.reflect(conn)  # the tables as 0003 left them (tables.py describes the head)
        E0, T0, L0 = old.tables["enrollment"], old.tables["touch"], old.tables["lead"]
        conn.execute(insert(L0).values(id=1, email="a@x.test", first_name="", last_name="",
                                      company="", stage="", timezone="", owner="", source="",
                                      fields={}, created_at=NOW, updated_at=NOW))
        for eid in (1, 2):
            conn.execute(insert(E0).values(
                id=eid, lead_id=1, sequence=f"s{eid}", state="active", stop_reason="",
                step_index=1, occurrence=0, touch_number=1, enrolled_at=NOW, updated_at=NOW,
                source=""))
        touches = [(1, "hello", 0, "sent"), (1, "follow-up", 1, "sending"),
                   (2, "hello", 0, "sent"), (2, "hello", 1, "sent")]  # 2: the bug, twice
        for i, (eid, name, index, state) in enumerate(touches, start=1):
            conn.execute(insert(T0).values(
                id=i, enrollment_id=eid, lead_id=1, sequence=f"s{eid}", step_name=name,
                step_index=index, occurrence=0, touch_number=index + 1, channel="email",
                task_kind="", state=state, mailbox="m", message_id=f"<{i}@x>",
                in_reply_to="", references="", subject="", body_text="", planned_at=NOW,
                claimed_by="", fence=1, attempts=1, deferrals=0, smtp_response="", error="",
                completed_by="", raw=b""))
    return s


def test_an_in_flight_touch_names_its_enrollment(old_store: Store) -> None:
    """The enrollment of a touch being sent takes that touch's step name; the other keeps ''
    and is placed by its index at its next claim."""
    old_store.db.upgrade()
    with old_store.db.read() as conn:
        names = dict(conn.execute(select(E.c.id, E.c.step_name)).all())
    assert names == {1: "follow-up", 2: ""}


def test_touches_already_duplicated_are_kept_under_a_new_name(old_store: Store) -> None:
    """The second copy of `hello` becomes `hello#4`, so the unique key on names holds."""
    old_store.db.upgrade()
    with old_store.db.read() as conn:
        rows = conn.execute(select(T.c.id, T.c.step_name).order_by(T.c.id)).all()
    assert [tuple(r) for r in rows] == [(1, "hello"), (2, "follow-up"), (3, "hello"),
                                        (4, "hello#4")]
    old_store.db.check_schema()
