"""Manual task steps (call, voicemail, LinkedIn, note): completing one advances the enrollment."""

from __future__ import annotations

from engine.domain.states import TouchState
from engine.services.planning import Planning
from engine.services.ports import Catalog, Clock, WorkerStore

OPEN = (TouchState.open.value,)


class Tasks:
    def __init__(self, workers: WorkerStore, catalog: Catalog, clock: Clock,
                 default_timezone: str) -> None:
        self.workers, self.catalog, self.clock = workers, catalog, clock
        self.plan = Planning(catalog.sequences, default_timezone)

    def complete(self, touch_id: int, by: str = "") -> None:
        """Mark an open task done; the next step counts from now."""
        _, record = self.workers.load(touch_id)
        claim = record.claim
        seq = self.catalog.get(claim.sequence)  # a broken sequence is an error, not an end
        now = self.clock.now()
        advance = self.plan.advance(seq, record.lead, claim.step_index, claim.occurrence, now,
                                    claim.step_name)
        self.workers.settle(touch_id, claim.fence, OPEN, "done", now, advance, by)
