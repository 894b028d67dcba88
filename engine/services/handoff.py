"""What a rep does with a handoff: claim it, close it (won / lost / not now), or put the lead
back into a nurture sequence. Shared by the CLI (`nurture handoff ...`) and the rep pages.

    open --claim--> claimed --close--> closed (won | lost | not_now)
    open | claimed --close--> closed
    open | claimed --resume SEQUENCE--> closed (renurtured) + a new enrollment

A claimed handoff belongs to its rep: another rep (`by`) cannot close or resume it. The
store checks that in the same UPDATE as the state, so it holds under races too. Without
`by` (an operator at the CLI) any live handoff can be closed or resumed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Protocol

from engine.domain.lead import LeadRecord
from engine.domain.states import HandoffOutcome, HandoffState
from engine.domain.touch import NextTouch
from engine.errors import InvalidTransition, NotFound
from engine.services.planning import Planning
from engine.services.ports import Catalog, Clock

LIVE = (HandoffState.open.value, HandoffState.claimed.value)
CLOSING_OUTCOMES = {"won": HandoffOutcome.won, "lost": HandoffOutcome.lost,
                    "not_now": HandoffOutcome.not_now, "not-now": HandoffOutcome.not_now}


class HandoffLike(Protocol):
    id: int
    rep: str
    state: str
    outcome: str


class HandoffStore(Protocol):
    """store.handoffs.HandoffStore, structurally."""

    def list(self, state: str | None = None, rep: str | None = None,
             limit: int = 200) -> Sequence[Any]: ...
    def get(self, handoff_id: int) -> Any: ...
    def detail(self, handoff_id: int) -> Any: ...
    def move(self, handoff_id: int, expect: Sequence[str], now: datetime, event: str,
             by: str = "", **values: Any) -> Any: ...
    def resume(self, handoff_id: int, expect: Sequence[str], sequence: str,
               plan: Callable[[LeadRecord], NextTouch | None], now: datetime,
               by: str = "") -> tuple[Any, int]: ...


class Handoffs:
    def __init__(self, store: HandoffStore, catalog: Catalog, clock: Clock,
                 default_timezone: str, reps: Sequence[str] = (),
                 wake: Callable[[], None] | None = None) -> None:
        self.store, self.catalog, self.clock = store, catalog, clock
        self.plan = Planning(catalog.sequences, default_timezone)
        self.reps, self.wake = tuple(reps), wake

    def list(self, state: str | None = None, rep: str | None = None) -> Sequence[Any]:
        if state is not None and state not in {s.value for s in HandoffState}:
            raise InvalidTransition(f"'{state}' is not a handoff state; use open, claimed or "
                                    "closed")
        return self.store.list(state, rep)

    def show(self, handoff_id: int) -> Any:
        """The handoff with its lead, the reply, the thread and the timeline."""
        return self.store.detail(handoff_id)

    def claim(self, handoff_id: int, rep: str) -> Any:
        """A rep takes the lead over. Claiming one's own claim again changes nothing."""
        rep = self._rep(rep)
        h = self.store.get(handoff_id)
        if h.state == HandoffState.claimed.value and h.rep == rep:
            return h
        if h.state == HandoffState.claimed.value:
            raise InvalidTransition(f"handoff {handoff_id} is already claimed by {h.rep}; "
                                    "they can close it, or put the lead back into nurture")
        if h.state == HandoffState.closed.value:
            raise InvalidTransition(_closed(h, "claimed"))
        return self.store.move(handoff_id, [HandoffState.open.value], self.clock.now(),
                               "handoff_claimed", by=rep, state=HandoffState.claimed.value,
                               rep=rep, claimed_at=self.clock.now())

    def close(self, handoff_id: int, outcome: str, note: str = "", by: str = "") -> Any:
        """Close with won, lost or not-now."""
        result = CLOSING_OUTCOMES.get(outcome.strip().lower())
        if result is None:
            raise InvalidTransition(f"'{outcome}' is not an outcome; use won, lost or not-now "
                                    "(or `resume` to put the lead back into a sequence)")
        h = self.store.get(handoff_id)
        if h.state == HandoffState.closed.value:
            raise InvalidTransition(_closed(h, "closed again"))
        _check_owner(h, by, "close")
        values: dict[str, Any] = {"state": HandoffState.closed.value, "outcome": result.value,
                                  "closed_at": self.clock.now()}
        if note:
            values["note"] = note
        return self.store.move(handoff_id, LIVE, self.clock.now(), "handoff_closed",
                               by=by, **values)

    def resume(self, handoff_id: int, sequence: str, by: str = "") -> tuple[Any, int]:
        """Close as `renurtured` and enroll the lead into `sequence` (e.g. a long nurture)."""
        seq = self.catalog.get(sequence)
        h = self.store.get(handoff_id)
        if h.state == HandoffState.closed.value:
            raise InvalidTransition(_closed(h, "resumed"))
        _check_owner(h, by, "put back into nurture")
        now = self.clock.now()

        def plan(lead: LeadRecord) -> NextTouch | None:
            return self.plan.first(seq, lead, now)

        result = self.store.resume(handoff_id, LIVE, seq.name, plan, now, by)
        if self.wake is not None:
            self.wake()
        return result

    def _rep(self, rep: str) -> str:
        rep = rep.strip()
        if not rep:
            raise InvalidTransition("say which rep claims it: --rep NAME")
        if self.reps and rep not in self.reps:
            raise NotFound(f"no rep named '{rep}'; configured reps: {', '.join(self.reps)}")
        return rep


def _check_owner(h: HandoffLike, by: str, verb: str) -> None:
    """A rep may not act on a lead another rep has claimed (the store re-checks atomically)."""
    if by and h.state == HandoffState.claimed.value and h.rep and h.rep != by:
        raise InvalidTransition(f"handoff {h.id} is claimed by {h.rep}; only they can {verb} "
                                "it")


def _closed(h: HandoffLike, verb: str) -> str:
    return (f"handoff {h.id} is closed ({h.outcome.replace('_', ' ')}); it cannot be {verb}. "
            "A new reply from the lead opens a new handoff")
