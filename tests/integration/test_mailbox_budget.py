"""Per-mailbox limits shared by every worker on one database: touches claimed or sending by
any worker count against the minute and the day, and the count and the claim it sizes are one
transaction (an advisory lock per mailbox on PostgreSQL). SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from engine.domain.touch import TouchPlan
from engine.services.send_due import SendDue, SendSettings
from engine.testing import FakeSender, SentMessage
from tests.servers.engine_env import Env, mailbox, make_env

LIMIT = 5
LEASE = timedelta(seconds=60)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def env(request: pytest.FixtureRequest, tmp_path: Path) -> Env:
    url = None if request.param == "sqlite" else str(request.getfixturevalue("pg_url"))
    mbox = mailbox().model_copy(update={"per_minute_limit": LIMIT})
    return make_env(tmp_path, url=url, mbox=mbox)


def worker(env: Env, name: str, sender: Any) -> SendDue:
    """Another worker on the same database (its own name and sender, same everything else)."""
    s = env.send
    return SendDue(queue=env.store.queue, mailbox_store=env.store.mailboxes,
                   catalog=env.catalog, sender=sender, maker=s.maker, clock=env.clock,
                   mailboxes=s.mailboxes, settings=SendSettings(name, 100, LEASE, "UTC"))


class GatedSender(FakeSender):
    """Holds the first message in SMTP until `gate` opens (a slow relay, made certain)."""

    def __init__(self) -> None:
        super().__init__()
        self.entered, self.gate = threading.Event(), threading.Event()
        self.fail = self._hold

    def _hold(self, _msg: SentMessage) -> None:
        self.entered.set()
        self.gate.wait(timeout=30)


def test_touches_another_worker_holds_use_the_budget(env: Env) -> None:
    """Worker A claimed a minute's worth and is still sending the first: worker B's pass
    sends nothing, however much is due; a minute later B sends the next five."""
    for i in range(3 * LIMIT):
        env.enroll(f"lead{i}@example.com")
    slow = GatedSender()
    a = worker(env, "w-a", slow)
    running = threading.Thread(target=lambda: asyncio.run(a.run_pass()))
    running.start()
    try:
        assert slow.entered.wait(timeout=30)
        b = worker(env, "w-b", FakeSender())
        report = asyncio.run(b.run_pass())
        assert report.claimed == 0 and b.sender.sent == []
    finally:
        slow.gate.set()
        running.join(timeout=30)
    assert len(slow.sent) == LIMIT
    env.clock.advance(seconds=61)
    assert asyncio.run(b.run_pass()).claimed == LIMIT


def test_a_claim_counts_again_inside_its_transaction(env: Env) -> None:
    """B sized its claim before A claimed: the claim itself finds the room gone."""
    for i in range(2 * LIMIT):
        env.enroll(f"lead{i}@example.com")
    now, plan = env.clock.now(), env.send._planner("sales")
    b_budget = env.store.mailboxes.budget("sales", LIMIT, 1000, now)  # B looked: room 5
    a_budget = env.store.mailboxes.budget("sales", LIMIT, 1000, now)
    assert len(env.store.queue.claim_due("w-a", ["welcome"], now, 100, LEASE, plan,
                                         a_budget)) == LIMIT
    assert env.store.queue.claim_due("w-b", ["welcome"], now, LIMIT, LEASE, plan,
                                     b_budget) == []
    assert b_budget.held_back


@pytest.mark.postgres
def test_concurrent_claims_on_postgres_never_exceed_the_minute(tmp_path: Path,
                                                               pg_url: str) -> None:
    """Four workers claim for one mailbox at the same instant, ten rounds (a new mailbox
    name each round): together they never claim more than the per-minute limit."""
    env = make_env(tmp_path, url=pg_url)
    for i in range(4 * LIMIT * 10):
        env.enroll(f"lead{i}@example.com")
    now, plan = env.clock.now(), env.send._planner("sales")
    for rnd in range(10):
        box = f"box{rnd}"
        start, got = threading.Barrier(4), []

        def claim(name: str, box: str = box, start: threading.Barrier = start,
                  got: list[int] = got) -> None:
            budget = env.store.mailboxes.budget(box, LIMIT, 1000, now)
            start.wait(timeout=30)
            got.append(len(env.store.queue.claim_due(
                name, ["welcome"], now, LIMIT, LEASE,
                lambda d: replace(p, mailbox=box) if isinstance(p := plan(d), TouchPlan)
                else p, budget)))
        threads = [threading.Thread(target=claim, args=(f"w{i}",)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        assert sum(got) == LIMIT, (rnd, got)
