"""Enrolling leads into a sequence: one (CLI, HTTP) or many (CSV import), idempotently.

An address is validated (syntax only, no DNS), lower-cased and merged into the lead it names;
a lead already live in the sequence is not enrolled twice; a suppressed address is refused.
The first touch is due at progress.first_due, and the dispatcher is woken at once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from email_validator import EmailNotValidError, validate_email

from engine.domain.lead import EnrollOutcome, LeadInput, LeadRecord, split_fields
from engine.domain.lead_input import check_lead_data, check_text
from engine.domain.progress import Next
from engine.domain.sequence import check_lead_timezone
from engine.errors import HandedOff, InvalidLead, Suppressed
from engine.services.planning import Planning
from engine.services.ports import Catalog, Clock, LeadStore

BATCH = 1000


@dataclass(frozen=True)
class Rejected:
    row: int
    email: str
    reason: str


@dataclass
class ImportReport:
    enrolled: int = 0
    already: int = 0  # live in the sequence already: merged, not enrolled twice
    duplicates: int = 0  # the same address on several rows: merged into one
    rejected: list[Rejected] = field(default_factory=list)
    seen: set[str] = field(default_factory=set, repr=False)

    @property
    def total(self) -> int:
        return self.enrolled + self.already + self.duplicates + len(self.rejected)


def parse_lead(email: str, values: Mapping[str, Any], row: int | None = None) -> LeadInput:
    """A validated LeadInput, or InvalidLead saying what is wrong and how to fix it."""
    address = normalise_email(email)
    columns, custom = split_fields(values)
    check_lead_data(columns, custom)  # the same rules for the API, --set and CSV rows
    if "timezone" in columns:
        check_lead_timezone(columns["timezone"])
    return LeadInput(address, columns, custom, row)


def normalise_email(email: str) -> str:
    text = (email or "").strip()
    if not text:
        raise InvalidLead("no email address given")
    try:
        # No SMTPUTF8: our relays and compose speak ASCII addresses. An internationalised
        # domain is kept in its ASCII (IDNA) form; a non-ASCII local part is refused here
        # rather than failing at the first send.
        valid = validate_email(text, check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError as exc:
        raise InvalidLead(f"'{text}' is not a valid email address: {exc} Use the address's "
                          "ASCII form; addresses that need SMTPUTF8 cannot be sent to") from None
    return (valid.ascii_email or valid.normalized).lower()


class Enroller:
    def __init__(self, leads: LeadStore, catalog: Catalog, clock: Clock,
                 default_timezone: str, wake: Callable[[], None] | None = None) -> None:
        self.leads, self.catalog, self.clock, self.wake = leads, catalog, clock, wake
        self.plan = Planning(catalog.sequences, default_timezone)

    def enroll(self, sequence: str, email: str, values: Mapping[str, Any] | None = None,
               source: str = "cli") -> EnrollOutcome:
        """Enroll one lead; `status` is `enrolled` or `already`. Suppressed -> Suppressed;
        a lead with an open or claimed handoff (it replied, a rep works it) -> HandedOff."""
        lead = parse_lead(email, values or {})
        source = check_text("source", source)
        outcome = self._enroll([lead], sequence, source)[0]
        if outcome.status == "suppressed":
            raise Suppressed(outcome.email, outcome.reason)
        if outcome.status == "handed_off":
            raise HandedOff(outcome.email, outcome.reason)
        return outcome

    def enroll_rows(
        self, sequence: str, rows: Iterable[tuple[int, Mapping[str, Any]]], source: str,
        progress: Callable[[int], None] | None = None,
    ) -> ImportReport:
        """Enroll rows of (line number, values with an `email` key) in batches;
        `progress(n)` is told of every row handled, rejected ones included."""
        self.catalog.get(sequence)  # an unknown sequence fails before any row is read
        report, batch, handled = ImportReport(), [], 0
        for number, values in rows:
            handled += 1
            try:
                batch.append(parse_lead(str(values.get("email") or ""), values, number))
            except InvalidLead as exc:
                report.rejected.append(Rejected(number, str(values.get("email") or ""),
                                                exc.message))
            if handled == BATCH:  # BATCH rows read, some perhaps rejected
                self._tally(report, self._enroll(batch, sequence, source) if batch else [])
                batch, handled = [], _told(progress, handled)
        if batch:
            self._tally(report, self._enroll(batch, sequence, source))
        _told(progress, handled)
        return report

    def _enroll(self, inputs: list[LeadInput], sequence: str,
                source: str) -> list[EnrollOutcome]:
        seq = self.catalog.get(sequence)
        now = self.clock.now()

        def plan(lead: LeadRecord) -> Next | None:
            return self.plan.first(seq, lead, now)

        outcomes = self.leads.enroll(inputs, seq.name, plan, now, source)
        if self.wake is not None and any(o.status == "enrolled" for o in outcomes):
            self.wake()
        return outcomes

    @staticmethod
    def _tally(report: ImportReport, outcomes: list[EnrollOutcome]) -> None:
        for o in outcomes:
            if o.email in report.seen:
                report.duplicates += 1
                continue
            report.seen.add(o.email)
            if o.status == "enrolled":
                report.enrolled += 1
            elif o.status == "already":
                report.already += 1
            elif o.status == "handed_off":
                report.rejected.append(Rejected(o.row or 0, o.email,
                                                f"replied, with a rep ({o.reason})"))
            else:
                report.rejected.append(Rejected(o.row or 0, o.email,
                                                f"suppressed ({o.reason})"))


def _told(progress: Callable[[int], None] | None, handled: int) -> int:
    """Report `handled` rows to the progress callback; returns the new count (0)."""
    if progress is not None and handled:
        progress(handled)
    return 0
