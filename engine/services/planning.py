"""Where an enrollment goes next, computed one way for enrolling, sending, tasks and recovery.

Thin glue over domain/progress.py: the lead's zone, the jitter key, and `on_finish`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from zoneinfo import ZoneInfo

from engine.domain.lead import LeadRecord
from engine.domain.progress import Next, after_done, first_due
from engine.domain.sequence import Sequence
from engine.domain.touch import Advance, FollowOn


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
                done_at: datetime) -> Advance:
        """The next step after one done at `done_at`, and the follow-on when finished."""
        nxt = after_done(seq, step_index, occurrence, done_at, self.zone(seq, lead),
                         self.key(lead.id, seq.name))
        if nxt is not None or seq.on_finish is None:
            return Advance(nxt)
        target = self.sequences.get(seq.on_finish.enroll)
        if target is None:
            return Advance(None)
        return Advance(None, FollowOn(target.name, self.first(target, lead, done_at)))
