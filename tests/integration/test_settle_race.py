"""A reaper's `hold` racing the worker's own 250 on PostgreSQL: the 250 commits first, so the
touch stays sent (a hold decided on the state read before it would make an operator resend a
message that left)."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text, update

from engine.errors import InvalidTransition
from engine.services.recover import SENDING
from engine.store.tables import Touch
from tests.servers.engine_env import make_env

T = Touch.__table__
LEASE = timedelta(seconds=60)

pytestmark = pytest.mark.postgres


def _blocked_on_a_lock(url: str) -> bool:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return bool(conn.execute(text(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND datname = current_database()")).scalar())
    finally:
        engine.dispose()


def test_a_hold_waits_for_the_250_being_recorded(tmp_path: Path, pg_url: str) -> None:
    """The worker's finish holds the touch row (uncommitted 'sent'); the reaper's settle
    waits for it, then sees 'sent' and refuses to hold it."""
    env = make_env(tmp_path, url=pg_url)
    env.enroll("ada@example.com")
    [claim] = env.store.queue.claim_due(env.worker, ["welcome"], env.clock.now(), 10, LEASE,
                                        env.send._planner("sales"))
    now = env.clock.now()
    env.store.queue.begin_send(claim, env.worker, now, LEASE, lambda ctx: env.send._decide(
        env.catalog.sequences["welcome"], now, ctx))
    errors: list[BaseException] = []

    def reaper() -> None:
        try:
            env.store.workers.settle(claim.touch_id, claim.fence, SENDING, "hold", now)
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            errors.append(exc)

    with env.store.db.engine.connect() as finish:  # the worker recording its 250
        finish.execute(text("SELECT 1 FROM touch WHERE id = :i FOR UPDATE"),
                       {"i": claim.touch_id})
        finish.execute(update(T).where(T.c.id == claim.touch_id).values(state="sent"))
        thread = threading.Thread(target=reaper)
        thread.start()
        deadline = time.monotonic() + 10
        while not _blocked_on_a_lock(pg_url) and thread.is_alive():
            assert time.monotonic() < deadline, "the reaper never reached the touch row"
            time.sleep(0.01)
        finish.commit()
    thread.join(timeout=10)
    assert [type(e) for e in errors] == [InvalidTransition]
    assert [t.state for t in env.touches()] == ["sent"]
