"""Manual task steps (call, voicemail, LinkedIn, note): completing one advances the enrollment."""

from __future__ import annotations

from engine.domain.states import TouchState
from engine.services.planning import Planning, settle_done
from engine.services.ports import Catalog, Clock, WorkerStore

OPEN = (TouchState.open.value,)


class Tasks:
    def __init__(self, workers: WorkerStore, catalog: Catalog, clock: Clock,
                 default_timezone: str) -> None:
        self.workers, self.catalog, self.clock = workers, catalog, clock
        self.plan = Planning(catalog.sequences, default_timezone)

    def complete(self, touch_id: int, by: str = "") -> None:
        """Mark an open task done; the next step counts from now."""
        settle_done(self.workers, self.catalog, self.plan, touch_id, OPEN, "done",
                    self.clock.now(), by)
