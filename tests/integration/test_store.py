"""The store on real databases: migrations, concurrent claims (SKIP LOCKED on PostgreSQL,
one writer on SQLite), the reaper, the unique step, and the NOTIFY that wakes a sender."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import select, update
from sqlmodel import SQLModel

from engine.domain.lead import LeadInput
from engine.domain.progress import Next
from engine.domain.touch import Advance, Delivered, DueEnrollment, SendEmail, TouchPlan
from engine.store.leads import end_live, lead_record, stop_live
from engine.store.store import Store
from engine.store.tables import Enrollment, Event, Lead, Touch

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
LEASE = timedelta(seconds=60)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    url = (f"sqlite:///{tmp_path / 's.db'}" if request.param == "sqlite"
           else str(request.getfixturevalue("pg_url")))
    s = Store(url)
    s.db.upgrade()
    request.addfinalizer(s.close)
    return s


@pytest.fixture
def pg_store(pg_url: str) -> Store:
    s = Store(pg_url)
    s.db.upgrade()
    yield s  # type: ignore[misc]
    s.close()


def plan(due: DueEnrollment) -> TouchPlan:
    return TouchPlan("first", "email", "", "sales", f"<m.{due.id}@acme.test>")


def enroll_many(store: Store, n: int) -> None:
    store.leads.enroll([LeadInput(f"l{i}@example.com") for i in range(n)], "s",
                       lambda _: Next(0, 0, NOW), NOW, "test")


def test_the_migrations_build_exactly_the_tables(store: Store) -> None:
    """`nurture db upgrade` yields the schema tables.py describes (no drift)."""
    with store.db.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), SQLModel.metadata) == []
    store.db.check_schema()
    store.db.upgrade()  # a second upgrade is a no-op


def test_times_are_stored_as_utc_and_read_back_aware(store: Store) -> None:
    """A time written in another zone comes back as the same instant, aware, in UTC (the
    contract tables.py states), and a naive one is refused rather than guessed."""
    from zoneinfo import ZoneInfo

    paris = NOW.astimezone(ZoneInfo("Europe/Paris"))
    store.leads.enroll([LeadInput("ada@example.com")], "s", lambda _: Next(0, 0, paris),
                       paris, "test")
    [row] = store.reports.enrollments()
    assert row["next_due_at"] == NOW and row["next_due_at"].utcoffset() == timedelta(0)
    with pytest.raises(Exception, match="timezone"), store.db.write() as conn:
        conn.execute(update(Enrollment).values(next_due_at=NOW.replace(tzinfo=None)))


def test_the_schema_head_constant_matches_the_migrations() -> None:
    """Database.head_revision (used on every command) names alembic's newest revision."""
    from alembic.script import ScriptDirectory

    from engine.store.db import MIGRATIONS, Database

    assert Database.head_revision() == ScriptDirectory(str(MIGRATIONS)).get_current_head()


def test_concurrent_claimers_never_share_a_step(store: Store) -> None:
    """Four threads claim at once: every due step is claimed by exactly one of them."""
    enroll_many(store, 200)
    results: list[list[int]] = []

    def claimer(name: str) -> None:
        got = []
        while batch := store.queue.claim_due(name, ["s"], NOW, 25, LEASE, plan):
            got += [c.enrollment_id for c in batch]
        results.append(got)
    threads = [threading.Thread(target=claimer, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    claimed = [e for r in results for e in r]
    assert len(claimed) == 200 and len(set(claimed)) == 200


def test_a_step_that_already_has_a_touch_leaves_the_rest_of_the_batch_claimed(
        store: Store) -> None:
    """A due step that already has its touch (put back by a bug elsewhere) is left out of the
    batch insert: the others are claimed in full, that enrollment is stopped, not re-sent."""
    enroll_many(store, 3)
    [done] = store.queue.claim_due("w1", ["s"], NOW, 1, LEASE, plan)
    store.queue.begin_send(done, "w1", NOW, LEASE, lambda ctx: SendEmail(
        b"raw", "sales@acme.test", ctx.lead.email, "Hi", "text"))
    store.queue.finish(done, Delivered(250, "ok", NOW),
                       Advance(Next(1, 0, NOW + timedelta(days=9))), NOW)
    E = Enrollment.__table__
    with store.db.write() as conn:  # the pointer forced back to the step already sent
        conn.execute(update(E).where(E.c.id == done.enrollment_id)
                     .values(step_index=0, next_due_at=NOW))
    claims = store.queue.claim_due("w2", ["s"], NOW, 10, LEASE, plan)
    assert len(claims) == 2 and done.enrollment_id not in {c.enrollment_id for c in claims}
    assert {(c.fence, c.attempts, c.deferrals, c.planned_at) for c in claims} == {
        (1, 0, 0, NOW)}
    touches = store.reports.touches()
    assert sorted(t.state for t in touches) == ["claimed", "claimed", "sent"]
    assert {t.claimed_at for t in touches if t.state == "claimed"} == {NOW}
    [stopped] = [e for e in store.reports.enrollments() if e["id"] == done.enrollment_id]
    assert (stopped["state"], stopped["stop_reason"]) == ("stopped", "duplicate_step")


@pytest.mark.postgres
def test_a_claimer_skips_rows_another_holds(pg_store: Store) -> None:
    """SKIP LOCKED: while one claim transaction is open, another takes different rows
    instead of waiting."""
    enroll_many(pg_store, 20)
    a_locked, b_done = threading.Event(), threading.Event()
    got: dict[str, list[int]] = {}

    def slow_plan(due: DueEnrollment) -> TouchPlan:
        a_locked.set()
        assert b_done.wait(10), "the second claimer waited for the first: rows were not skipped"
        return plan(due)

    def a() -> None:
        got["a"] = [c.enrollment_id for c in
                    pg_store.queue.claim_due("a", ["s"], NOW, 10, LEASE, slow_plan)]
    t = threading.Thread(target=a)
    t.start()
    assert a_locked.wait(10)
    got["b"] = [c.enrollment_id for c in pg_store.queue.claim_due("b", ["s"], NOW, 10, LEASE,
                                                                 plan)]
    b_done.set()
    t.join(timeout=10)
    assert len(got["a"]) == len(got["b"]) == 10 and not set(got["a"]) & set(got["b"])


def test_a_dead_workers_claims_are_retaken_with_a_new_fence(store: Store) -> None:
    """Worker w1 dies holding claims; w2's reaper releases them and w2 claims them."""
    enroll_many(store, 3)
    store.workers.register("w1", "elsewhere", 1, NOW)
    first = store.queue.claim_due("w1", ["s"], NOW, 10, LEASE, plan)
    later = NOW + timedelta(minutes=2)
    released, _ = store.workers.reap(later, later - timedelta(seconds=30))
    again = store.queue.claim_retries("w2", ["s"], later, 10, LEASE)
    assert released == 3
    assert sorted((c.touch_id, c.fence) for c in again) == sorted(
        (c.touch_id, c.fence + 1) for c in first)


def test_a_step_cannot_get_a_second_touch(store: Store) -> None:
    """The unique (enrollment, step, occurrence) holds even if the queue is corrupted."""
    enroll_many(store, 1)
    [claim] = store.queue.claim_due("w1", ["s"], NOW, 10, LEASE, plan)
    store.queue.begin_send(claim, "w1", NOW, LEASE, lambda ctx: SendEmail(
        b"raw", "sales@acme.test", ctx.lead.email, "s", "t"))
    store.queue.finish(claim, Delivered(250, "ok", NOW), Advance(Next(1, 0, NOW)), NOW)
    with store.db.write() as conn:
        conn.execute(update(Enrollment.__table__).values(step_index=0, next_due_at=NOW))
    assert store.queue.claim_due("w1", ["s"], NOW, 10, LEASE, plan) == []
    assert len(store.reports.touches()) == 1


@pytest.mark.postgres
def test_an_enrollment_notifies_a_listening_sender(pg_store: Store) -> None:
    """Another process's enrollment wakes the dispatcher through LISTEN/NOTIFY."""
    from engine.daemon.wake import listen

    async def go() -> None:
        stop, woken = asyncio.Event(), asyncio.Event()
        calls: list[int] = []

        def wake() -> None:
            calls.append(1)
            if len(calls) > 1:  # the first call is the catch-up when listening starts
                woken.set()
        task = asyncio.create_task(listen(pg_store.db.url, wake, stop))
        while not calls:
            await asyncio.sleep(0.01)
        await asyncio.to_thread(enroll_many, pg_store, 1)
        await asyncio.wait_for(woken.wait(), 5)
        stop.set()
        await task
    asyncio.run(go())


def test_a_lead_reads_the_same_from_its_table_and_from_a_labelled_join(store: Store) -> None:
    """lead_record builds one LeadRecord from the lead's own row and from a join that labels
    its columns `l_*` (the claim's begin_send reads the lead that way)."""
    store.leads.enroll([LeadInput("ada@example.com", {"first_name": "Ada", "company": "Acme"},
                                  {"plan": "pro"})], "s", lambda _: Next(0, 0, NOW), NOW, "test")
    L, T = Lead.__table__, Touch.__table__
    with store.db.read() as conn:
        plain = lead_record(conn.execute(select(L)).one())
        joined = lead_record(conn.execute(
            select(T.c.id, *[c.label(f"l_{c.name}") for c in L.c])
            .select_from(L.outerjoin(T, T.c.lead_id == L.c.id))).one(), "l_")
    assert plain == joined
    assert (plain.email, plain.first_name, plain.company, dict(plain.fields)) == (
        "ada@example.com", "Ada", "Acme", {"plan": "pro"})


def test_a_stop_moves_only_live_enrollments_and_logs_each_once(store: Store) -> None:
    """end_live moves the still-live enrollments given (in that order) and leaves an ended one
    as it is (a handoff stands); a stop clears the pause and logs enrollment_stopped once."""
    store.leads.enroll([LeadInput("ada@example.com")], "s", lambda _: Next(0, 0, NOW), NOW, "t")
    store.leads.enroll([LeadInput("ada@example.com")], "u", lambda _: Next(0, 0, NOW), NOW, "t")
    E, EV = Enrollment.__table__, Event.__table__
    with store.db.write() as conn:
        first, second = conn.execute(select(E.c.id).order_by(E.c.id)).scalars().all()
        lead_id = conn.execute(select(E.c.lead_id)).scalars().first()
        conn.execute(update(E).where(E.c.id == second).values(
            state="paused", paused_until=NOW + timedelta(days=2)))
        assert end_live(conn, [first], "handed_off", "replied", NOW) == [first]
        assert end_live(conn, [first], "stopped", "manual", NOW) == []
        assert stop_live(conn, lead_id, "unsubscribe", NOW) == [second]
    with store.db.read() as conn:
        rows = {r.id: r for r in conn.execute(select(E))}
        stopped = conn.execute(select(EV.c.enrollment_id).where(
            EV.c.kind == "enrollment_stopped")).scalars().all()
    assert (rows[first].state, rows[first].stop_reason) == ("handed_off", "replied")
    assert (rows[second].state, rows[second].stop_reason) == ("stopped", "unsubscribe")
    assert rows[second].paused_until is None and rows[second].next_due_at is None
    assert stopped == [second]


def test_ping_of_a_file_that_is_not_a_database_is_a_clear_error(tmp_path: Path) -> None:
    """/healthz and /metrics ping the database: a broken file is DatabaseError, not a traceback."""
    from engine.errors import DatabaseError
    from engine.store.db import Database, ping

    junk = tmp_path / "nurture.db"
    junk.write_bytes(b"not a database" * 100)
    with pytest.raises(DatabaseError, match="not a database"):
        ping(Database(f"sqlite:///{junk}"))
