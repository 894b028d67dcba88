"""The rep's moves on a handoff (services/handoff.py) over an in-memory store."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import pytest

from engine.authoring.catalog import Catalog
from engine.domain.lead import LeadRecord
from engine.errors import InvalidTransition, NotFound, UnknownSequence
from engine.services.handoff import Handoffs
from engine.testing import FrozenClock
from tests.servers.engine_env import sequence


@dataclass(frozen=True)
class Row:
    id: int
    rep: str = "alice"
    state: str = "open"
    outcome: str = ""
    note: str = ""
    claimed_at: datetime | None = None
    closed_at: datetime | None = None


class FakeHandoffStore:
    def __init__(self, *rows: Row) -> None:
        self.rows = {r.id: r for r in rows}
        self.events: list[tuple[str, int, str]] = []
        self.enrolled: list[tuple[str, Any]] = []

    def list(self, state: str | None = None, rep: str | None = None,
             limit: int = 200) -> list[Row]:
        return [r for r in self.rows.values() if state in (None, r.state)
                and rep in (None, r.rep)]

    def get(self, handoff_id: int) -> Row:
        if handoff_id not in self.rows:
            raise NotFound(f"no handoff with id {handoff_id}")
        return self.rows[handoff_id]

    def detail(self, handoff_id: int) -> Row:
        return self.get(handoff_id)

    def move(self, handoff_id: int, expect: Sequence[str], now: datetime, event: str,
             by: str = "", **values: Any) -> Row:
        row = self.get(handoff_id)
        if row.state not in expect:
            raise InvalidTransition("changed meanwhile")
        self.rows[handoff_id] = replace(row, **values)
        self.events.append((event, handoff_id, by))
        return self.rows[handoff_id]

    def resume(self, handoff_id: int, expect: Sequence[str], sequence: str,
               plan: Callable[[LeadRecord], Any], now: datetime,
               by: str = "") -> tuple[Row, int]:
        row = self.move(handoff_id, expect, now, "handoff_closed", by, state="closed",
                        outcome="renurtured", closed_at=now)
        self.enrolled.append((sequence, plan(LeadRecord(1, "ada@example.com"))))
        return row, 99


def handoffs(*rows: Row, reps: tuple[str, ...] = ("alice", "bob"),
             wake: Callable[[], None] | None = None) -> tuple[Handoffs, FakeHandoffStore]:
    store = FakeHandoffStore(*rows)
    catalog = Catalog(sequences={s.name: s for s in (sequence(), sequence("ripen"))})
    return Handoffs(store, catalog, FrozenClock(), "UTC", reps, wake), store


def test_claim_assigns_the_rep() -> None:
    """open -> claimed by the rep who asks, with the time."""
    svc, store = handoffs(Row(1, rep="alice"))
    got = svc.claim(1, "bob")
    assert (got.state, got.rep, got.claimed_at) == ("claimed", "bob", FrozenClock().now())
    assert store.events == [("handoff_claimed", 1, "bob")]


def test_claiming_ones_own_claim_again_changes_nothing() -> None:
    """Idempotent for the same rep (a double click on the page)."""
    svc, store = handoffs(Row(1, rep="bob", state="claimed"))
    assert svc.claim(1, "bob").state == "claimed" and store.events == []


def test_a_claim_by_another_rep_is_refused() -> None:
    """Claimed by alice: bob is told who has it."""
    svc, _ = handoffs(Row(1, rep="alice", state="claimed"))
    with pytest.raises(InvalidTransition, match="already claimed by alice"):
        svc.claim(1, "bob")


def test_an_unknown_rep_cannot_claim() -> None:
    """With reps configured, a misspelt name is named and the reps listed."""
    svc, _ = handoffs(Row(1))
    with pytest.raises(NotFound, match="no rep named 'bbo'; configured reps: alice, bob"):
        svc.claim(1, "bbo")


@pytest.mark.parametrize(("said", "outcome"), [
    ("won", "won"), ("lost", "lost"), ("not-now", "not_now"), ("not_now", "not_now"),
])
def test_close_records_the_outcome(said: str, outcome: str) -> None:
    """open or claimed -> closed with won, lost or not now."""
    svc, _ = handoffs(Row(1, state="claimed"))
    got = svc.close(1, said, note="budget in Q3")
    assert (got.state, got.outcome, got.note) == ("closed", outcome, "budget in Q3")


def test_another_rep_cannot_close_or_resume_a_claimed_handoff() -> None:
    """Claimed by alice: bob's close or resume is refused and nothing moves; alice and an
    operator without a name (the CLI without --by) can."""
    svc, store = handoffs(Row(1, rep="alice", state="claimed"))
    for move in (lambda: svc.close(1, "lost", by="bob"),
                 lambda: svc.resume(1, "ripen", by="bob")):
        with pytest.raises(InvalidTransition, match="claimed by alice; only they can"):
            move()
    assert store.rows[1].state == "claimed" and store.events == []
    assert svc.close(1, "won", by="alice").state == "closed"


def test_an_unknown_outcome_is_refused_with_the_choices() -> None:
    """`--outcome maybe` is explained, not stored."""
    svc, _ = handoffs(Row(1))
    with pytest.raises(InvalidTransition, match="use won, lost or not-now"):
        svc.close(1, "maybe")


def test_a_closed_handoff_cannot_be_closed_claimed_or_resumed() -> None:
    """Every move out of closed is refused in plain words."""
    svc, _ = handoffs(Row(1, state="closed", outcome="won"))
    for move in (lambda: svc.close(1, "lost"), lambda: svc.claim(1, "bob"),
                 lambda: svc.resume(1, "ripen")):
        with pytest.raises(InvalidTransition, match=r"handoff 1 is closed \(won\)"):
            move()


def test_resume_enrolls_the_lead_and_wakes_the_sender() -> None:
    """Back into `ripen`: closed as renurtured, enrolled with its first step planned."""
    woken: list[bool] = []
    svc, store = handoffs(Row(1), wake=lambda: woken.append(True))
    row, enrollment_id = svc.resume(1, "ripen", by="alice")
    assert (row.state, row.outcome, enrollment_id) == ("closed", "renurtured", 99)
    [(seq, first)] = store.enrolled
    assert seq == "ripen" and first.step_index == 0 and woken == [True]


def test_resume_into_an_unknown_sequence_names_the_known_ones() -> None:
    """A typo in the sequence name: nothing changes, the error helps."""
    svc, store = handoffs(Row(1))
    with pytest.raises(UnknownSequence, match="did you mean 'ripen'"):
        svc.resume(1, "ripn")
    assert store.rows[1].state == "open"


def test_listing_by_state_checks_the_state() -> None:
    """--state must be open, claimed or closed."""
    svc, _ = handoffs(Row(1), Row(2, state="closed"))
    assert [r.id for r in svc.list("closed")] == [2]
    with pytest.raises(InvalidTransition, match="use open, claimed or closed"):
        svc.list("done")


def test_a_missing_handoff_is_not_found() -> None:
    """A wrong id says how to find the right one."""
    svc, _ = handoffs()
    with pytest.raises(NotFound, match="no handoff with id 5"):
        svc.claim(5, "alice")
