"""Two reps acting on one handoff at the same moment, on the real store (SQLite file and
PostgreSQL): the rep check is in the same UPDATE as the state check, so rep B can never
close or resume a lead rep A claimed, whatever the interleaving."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from engine.errors import InvalidTransition
from engine.mail.parse import parse_inbound
from engine.services.handle_inbound import HandleInbound, InboundSettings
from engine.services.handoff import Handoffs
from engine.testing import RawMail
from tests.servers.engine_env import Env, make_env, sequence

ROUNDS = 12


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def env(request: pytest.FixtureRequest, tmp_path: Path) -> Env:
    url = request.getfixturevalue("pg_url") if request.param == "postgres" else None
    return make_env(tmp_path, [sequence(), sequence("ripen")], url=url)


def handoffs_for(env: Env, count: int) -> list[int]:
    """`count` leads got the first touch and replied: one open handoff each."""
    emails = [f"lead{i}@example.com" for i in range(count)]
    for email in emails:
        env.enroll(email, first_name="Lead")
    env.run_once()
    inbound = HandleInbound(env.store.inbound, env.catalog, env.clock, parse_inbound,
                            InboundSettings("UTC", ("alice", "bob")))
    ids = []
    for uid, touch in enumerate(env.touches(), start=1):
        msg = EmailMessage()
        msg["From"], msg["To"], msg["Subject"] = touch.email, "sales@acme.test", "Re: Hello"
        msg["Message-ID"], msg["In-Reply-To"] = f"<r{uid}@example.com>", touch.message_id
        msg.set_content("Call me tomorrow.\n")
        done = inbound(RawMail(msg.as_bytes(), uid))
        assert done.handoff is not None
        ids.append(done.handoff.handoff_id)
    return ids


def service(env: Env) -> Handoffs:
    return Handoffs(env.store.handoffs, env.catalog, env.clock, "UTC", ("alice", "bob"))


def at_once(*moves: Callable[[], Any]) -> list[bool]:
    """Run the moves in threads released together; which of them succeeded."""
    start = threading.Barrier(len(moves))
    won = [False] * len(moves)
    unexpected: list[BaseException] = []

    def run(i: int) -> None:
        start.wait()
        try:
            moves[i]()
            won[i] = True
        except InvalidTransition:
            pass
        except BaseException as exc:  # noqa: BLE001 - reported by the test below
            unexpected.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(moves))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not unexpected, unexpected
    return won


def test_a_close_decided_before_another_reps_claim_loses(env: Env) -> None:
    """Bob saw the handoff open and closes it after Alice's claim committed (the race's
    losing order, made certain): the guarded UPDATE refuses it; Alice keeps the lead."""
    [hid] = handoffs_for(env, 1)
    service(env).claim(hid, "alice")
    with pytest.raises(InvalidTransition, match="claimed by alice meanwhile"):
        env.store.handoffs.move(hid, ["open", "claimed"], datetime.now(UTC), "handoff_closed",
                                by="bob", state="closed", outcome="lost")
    with pytest.raises(InvalidTransition, match="claimed by alice meanwhile"):
        env.store.handoffs.resume(hid, ["open", "claimed"], "ripen", lambda _: None,
                                  datetime.now(UTC), by="bob")
    h = env.store.handoffs.get(hid)
    assert (h.state, h.rep) == ("claimed", "alice")


def test_a_claim_and_another_reps_close_at_once_never_both_win(env: Env) -> None:
    """Alice claims while Bob closes, released together, many times: exactly one of them
    wins each time, and a handoff that ends claimed is Alice's, one that ends closed was
    closed before anyone claimed it."""
    svc = service(env)
    for hid in handoffs_for(env, ROUNDS):
        claimed, closed = at_once(lambda h=hid: svc.claim(h, "alice"),
                                  lambda h=hid: svc.close(h, "lost", by="bob"))
        h = env.store.handoffs.get(hid)
        assert claimed != closed, f"handoff {hid}: claim {claimed}, close {closed}"
        assert (h.state, h.rep) == ("claimed", "alice") if claimed else h.state == "closed"
