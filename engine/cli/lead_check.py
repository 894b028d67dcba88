"""Before a lead is sent anything: would its sequence's templates render for its data?

`nurture enroll` and `nurture import` accept a lead that lacks a custom field a template
uses (`{{ lead.plan }}` and no `plan`); its touch would fail at send time and stop the
enrollment. This renders the lead's timeline the way `preview` does, with the lead's own
data (no sample values), and says which steps would fail. `import` checks one row per
distinct set of filled columns, so a 100,000-row file costs a few renders.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from engine.app import App
from engine.cli.authoring import preview_touches
from engine.errors import NurtureError

Row = tuple[int, Mapping[str, Any]]


def render_problems(app: App, sequence: str, values: Mapping[str, Any]) -> list[str]:
    """'step: error' for each step whose email or note would not render for this lead."""
    lead = {k: v for k, v in values.items() if v not in ("", None)}
    seq = app.catalog.sequences.get(sequence)
    mbox = app.settings.mailboxes.get(seq.mailbox) if seq else None
    if seq is None or mbox is None:
        return []  # not sendable as it stands: validate and status say why
    try:
        # the mailbox exactly as the daemon renders it (no preview fallbacks or samples)
        touches = preview_touches(app.settings, app.catalog, seq, lead, datetime.now(UTC),
                                  None, [], 50, sender=app.maker.sender(mbox))
    except NurtureError:
        return []  # a lead the import rejects anyway (a bad zone): nothing to add
    return list(dict.fromkeys(f"{t.entry.step}: {t.error}" for t in touches if t.error))


@dataclass
class FieldCheck:
    """Rows grouped by which columns they fill; the first row of each group is rendered."""

    groups: dict[frozenset[str], list[int]] = field(default_factory=dict)
    first: dict[frozenset[str], Mapping[str, Any]] = field(default_factory=dict)

    def watch(self, rows: Iterable[Row]) -> Iterator[Row]:
        """Pass the rows through, noting each one's filled columns."""
        for line, values in rows:
            key = frozenset(k for k, v in values.items() if v)
            if key not in self.groups:
                self.groups[key], self.first[key] = [], values
            self.groups[key].append(line)
            yield line, values

    def warnings(self, app: App, sequence: str, rejected: set[int]) -> list[str]:
        out = []
        for key, lines in self.groups.items():
            kept = [n for n in lines if n not in rejected]
            problems = render_problems(app, sequence, self.first[key]) if kept else []
            if problems:
                out.append(f"{len(kept)} row(s) (first on line {kept[0]}) lack a field their "
                           f"emails use and will fail at send time unless the lead already "
                           f"has it: {'; '.join(problems)}. Add the column, or later "
                           "`nurture touches retry ID --set KEY=VALUE`")
        return out
