"""The template checks of one sequence: every template exists, compiles and renders.

Each email template (every stage variant) and task note is rendered for the sequence's
sample lead, so an undefined name or a broken filter is found by `validate`, not at 09:00 on
a Tuesday by the daemon.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from engine.authoring.templates import Renderer
from engine.authoring.yamlload import Document, Loc
from engine.domain.context import (
    LEAD_KEYS,
    default_sample_sender,
    sample_lead,
    template_context,
)
from engine.domain.sequence import Sequence, Step
from engine.errors import Problem, RenderError

SAMPLE_UNSUBSCRIBE_URL = "https://nurture.example/u/sample-token"
SAMPLE_NEXT_TOUCH = datetime(2030, 3, 5, 9, 30, tzinfo=UTC)  # a Tuesday


@dataclass(frozen=True)
class Slot:
    """A step and its place in the file (its index there, and whether it is the last)."""

    step: Step
    index: int
    last: bool

    def next_touches(self) -> list[datetime | None]:
        """The values next_touch_at takes for this step: a date, and none on the last touch."""
        if not self.last:
            return [SAMPLE_NEXT_TOUCH]
        return [SAMPLE_NEXT_TOUCH, None] if self.step.occurrences > 1 else [None]


def all_slots(seq: Sequence) -> list[Slot]:
    return [Slot(step, i, i == len(seq.steps) - 1) for i, step in enumerate(seq.steps)]


@dataclass
class TemplateChecker:
    """Checks the templates of many sequences, compiling each template once."""

    renderer: Renderer
    default_timezone: str = "UTC"
    _compiled: dict[str, Problem | None] = field(default_factory=dict)

    def check(self, seq: Sequence, doc: Document, slots: list[Slot] | None = None) -> list[Problem]:
        """Every step's templates; `slots` when only some steps of the file parsed."""
        problems: list[Problem] = []
        for slot in slots if slots is not None else all_slots(seq):
            problems += _check_when(seq, doc, slot)
            if slot.step.email is not None:
                problems += self._check_variants(seq, doc, slot, slot.step.email.template)
            elif slot.step.task is not None and slot.step.task.note:
                problems += self._check_note(seq, doc, slot)
        return list(dict.fromkeys(problems))

    def _check_variants(self, seq: Sequence, doc: Document, slot: Slot,
                        variants: str | dict[str, str]) -> list[Problem]:
        """One template, or one per stage (each rendered with the lead at that stage)."""
        base: Loc = ("steps", slot.index, "email", "template")
        if isinstance(variants, str):
            return self._check_email(seq, doc, slot, base, variants, None)
        if not variants:
            return [doc.problem(base, "template names no file; write a file name, or "
                                      "stage: file lines")]
        return [problem for stage, name in variants.items()
                for problem in self._check_email(seq, doc, slot, (*base, stage), name, stage)]

    def _check_email(self, seq: Sequence, doc: Document, slot: Slot, loc: Loc, name: str,
                     stage: str | None) -> list[Problem]:
        if not self.renderer.exists(name):
            return [doc.problem(loc, self._missing(name))]
        broken = self._compile(name)
        if broken is not None:
            return [broken]
        step = slot.step
        problems = []
        for next_touch in slot.next_touches():
            lead = {"stage": stage} if stage and stage != "default" else {}
            context = self._context(seq, slot, next_touch, lead)
            try:
                email = self.renderer.render_email(name, context)
            except RenderError as exc:
                used_at = f"step '{step.name}' at {doc.path}:{doc.line(loc)}"
                problems.append(self._problem(exc, f" (used by {used_at})"))
                continue
            problems += self._footer(name, email.text, email.html)
        return problems

    def _check_note(self, seq: Sequence, doc: Document, slot: Slot) -> list[Problem]:
        step = slot.step
        assert step.task is not None
        loc = ("steps", slot.index, "task", "note")
        problems = []
        for next_touch in slot.next_touches():
            context = self._context(seq, slot, next_touch, {})
            try:
                self.renderer.render_text(step.task.note, context, name=doc.path)
            except RenderError as exc:
                problems.append(doc.problem(loc, f"note: {_bare(exc)}"))
        return problems

    def _compile(self, name: str) -> Problem | None:
        if name not in self._compiled:
            try:
                self.renderer.check(name)
                self._compiled[name] = None
            except RenderError as exc:
                self._compiled[name] = self._problem(exc)
        return self._compiled[name]

    def _context(self, seq: Sequence, slot: Slot, next_touch: datetime | None,
                 lead_overrides: dict[str, Any]) -> dict[str, Any]:
        lead = sample_lead({**seq.sample_lead, **lead_overrides})
        zone = seq.zone(lead.get("timezone"), self.default_timezone)
        return template_context(lead, default_sample_sender(), seq, slot.step, slot.index + 1,
                                next_touch, SAMPLE_UNSUBSCRIBE_URL, zone)

    def _footer(self, name: str, text: str, html: str) -> list[Problem]:
        """Every email carries the unsubscribe link and the postal address (CAN-SPAM, RFC 8058)."""
        path = str(self.renderer.templates_dir / name)
        found = []
        if SAMPLE_UNSUBSCRIBE_URL not in text or SAMPLE_UNSUBSCRIBE_URL not in html:
            found.append(Problem(path, None, "the email has no unsubscribe link; end it with "
                                             "{% include \"_footer.md.j2\" %} or write "
                                             "{{ unsubscribe_url }}"))
        address = default_sample_sender()["postal_address"]
        if address not in text:
            found.append(Problem(path, None, "the email has no postal address (the law asks for "
                                             "one); end it with {% include \"_footer.md.j2\" %} "
                                             "or write {{ sender.postal_address }}"))
        return found

    def _missing(self, name: str) -> str:
        root = self.renderer.templates_dir
        known = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.j2")) \
            if root.is_dir() else []
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.75)
        hint = f"; did you mean '{close[0]}'?" if close else "; create it, or fix the name"
        return f"template '{name}' does not exist in {root}/{hint}"

    def _problem(self, exc: RenderError, suffix: str = "") -> Problem:
        path = str(self.renderer.templates_dir / exc.template)
        return Problem(path, exc.line, _bare(exc) + suffix)


def _bare(exc: RenderError) -> str:
    """The RenderError's sentence without its `template:line: ` prefix."""
    where = f"{exc.template}:{exc.line}" if exc.line else exc.template
    return exc.message.removeprefix(f"{where}: ")


def _check_when(seq: Sequence, doc: Document, slot: Slot) -> list[Problem]:
    """A `when:` field must be a lead column or in the sample lead, as a template's must: a
    misspelt one (`plna`) would otherwise skip the step for every lead, silently."""
    known = sorted({*LEAD_KEYS, *sample_lead(seq.sample_lead)["fields"]})
    problems = []
    for key in slot.step.when or {}:
        if key in known:
            continue
        close = difflib.get_close_matches(str(key), known, n=1)
        hint = f"did you mean '{close[0]}'? If not, " if close else ""
        problems.append(doc.problem(
            ("steps", slot.index, "when", key),
            f"when: '{key}' is not a lead field and the sample_lead does not have it; "
            f"{hint}add it to sample_lead (leads give it as a custom field)"))
    return problems
