"""Changes to a lead from outside (HTTP, CLI): its buying stage, and stopping its sequences.

A stage change takes effect at the next touch: the template for a stage is chosen on the day
a step is sent (EmailSpec.template_for), so nothing already scheduled needs moving.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from engine.domain.lead import LeadRecord
from engine.domain.lead_input import check_text
from engine.errors import InvalidLead, NotFound
from engine.services.enroll import normalise_email
from engine.services.ports import Clock


class LeadChangeStore(Protocol):
    def get(self, email: str) -> LeadRecord | None: ...
    def set_stage(self, lead_id: int, stage: str, now: datetime) -> None: ...
    def stop(self, lead_id: int, sequence: str | None, reason: str, now: datetime) -> int: ...


class LeadChanges:
    def __init__(self, leads: LeadChangeStore, clock: Clock) -> None:
        self.leads, self.clock = leads, clock

    def set_stage(self, email: str, stage: str) -> LeadRecord:
        """Move a lead to another buying stage; its next touch uses that stage's template."""
        lead = self._lead(email)
        stage = check_stage(stage)
        if stage != lead.stage:
            self.leads.set_stage(lead.id, stage, self.clock.now())
        return self._lead(email)

    def stop(self, email: str, sequence: str | None = None, reason: str = "manual") -> int:
        """Stop the lead's live enrollments (in one sequence, or all); how many stopped."""
        lead = self._lead(email)
        return self.leads.stop(lead.id, sequence or None, reason or "manual", self.clock.now())

    def _lead(self, email: str) -> LeadRecord:
        lead = self.leads.get(normalise_email(email))
        if lead is None:
            raise NotFound(f"no lead with the address {email.strip().lower()}")
        return lead


def check_stage(stage: str) -> str:
    if not (stage or "").strip():
        raise InvalidLead("stage: give the lead's new stage, e.g. consideration")
    return check_text("stage", stage)  # the rules every entry point shares
