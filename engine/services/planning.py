"""Where an enrollment goes next, computed one way for enrolling, sending, tasks and recovery.

Thin glue over domain/progress.py: the lead's zone, the jitter key, and `on_finish`; and
`settle_done`, the one way a person's "this step is done" is recorded.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import datetime
from zoneinfo import ZoneInfo

import structlog

from engine.domain.lead import LeadRecord
from engine.domain.progress import FIND_NEXT, Next, after_done, first_due, index_of
from engine.domain.sequence import Sequence
from engine.domain.touch import Advance, FollowOn
from engine.services.ports import Catalog, WorkerStore

log = structlog.get_logger("nurture.planning")


class Planning:
    def __init__(self, sequences: Mapping[str, Sequence], default_timezone: str) -> None:
        self.sequences = sequences
        self.default_timezone = default_timezone

    def zone(self, seq: Sequence, lead: LeadRecord) -> ZoneInfo:
        return seq.zone(lead.timezone or None, self.default_timezone)

    @staticmethod
    def key(lead_id: int, sequence: str) -> str:
        """Seeds jitter: the same lead in the same sequence always gets the same offsets."""
        return f"{lead_id}:{sequence}"

    def first(self, seq: Sequence, lead: LeadRecord, at: datetime) -> Next | None:
        return first_due(seq, at, self.zone(seq, lead), self.key(lead.id, seq.name))

    def advance(self, seq: Sequence, lead: LeadRecord, step_index: int, occurrence: int,
                done_at: datetime, step_name: str = "") -> Advance:
        """The next step after one done at `done_at`, and the follow-on when finished.

        The done step is found by `step_name` in the sequence as loaded now (`step_index`
        is where it stood when claimed). If an edit removed it meanwhile, the enrollment
        waits for whatever follows the last step it had, found at its next claim.
        """
        index = index_of(seq, step_name, step_index)
        if index is None:
            return Advance(Next(step_index, 0, done_at, FIND_NEXT))
        nxt = after_done(seq, index, occurrence, done_at, self.zone(seq, lead),
                         self.key(lead.id, seq.name))
        if nxt is not None or seq.on_finish is None:
            return Advance(nxt)
        return self.finish(seq, lead, done_at, len(seq.steps))

    def finish(self, seq: Sequence, lead: LeadRecord, at: datetime, step_index: int) -> Advance:
        """The sequence is done: enroll in its on_finish target, or wait while that is not
        loaded (broken mid-edit) rather than drop the lead's long-term track."""
        if seq.on_finish is None:
            return Advance(None)
        target = self.sequences.get(seq.on_finish.enroll)
        if target is None:
            log.warning("on_finish_unavailable", lead_id=lead.id, sequence=seq.name,
                        on_finish=seq.on_finish.enroll)
            return Advance(Next(step_index, 0, at, FIND_NEXT),
                           on_finish_unavailable=seq.on_finish.enroll)
        return Advance(None, FollowOn(target.name, self.first(target, lead, at)))


def settle_done(workers: WorkerStore, catalog: Catalog, plan: Planning, touch_id: int,
                from_states: Collection[str], how: str, now: datetime, by: str) -> None:
    """Record that a person says a touch's step is done (`done`: a task completed; `sent`: an
    in-doubt send left) and advance its enrollment, the next step counting from `now`."""
    _, record = workers.load(touch_id)
    claim = record.claim
    seq = catalog.get(claim.sequence)  # a broken sequence is an error, not an end
    advance = plan.advance(seq, record.lead, claim.step_index, claim.occurrence, now,
                           claim.step_name)
    workers.settle(touch_id, claim.fence, from_states, how, now, advance, by)
