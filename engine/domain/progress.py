"""Which step of a sequence comes next for an enrollment, and when it falls due.

The daemon and `nurture simulate` both walk a sequence with these functions, so the
timeline a marketer sees is the one the daemon keeps. `when:` conditions and the lead's
stage are not read here: the sender reads them at send time, records a skipped touch and
calls `after_done` like for any other touch.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from engine.domain.schedule import due_at
from engine.domain.sequence import Sequence


@dataclass(frozen=True)
class Next:
    """The touch an enrollment waits for: a step, its repetition (from 0) and its due time."""

    step_index: int
    occurrence: int
    due_at: datetime


def first_due(seq: Sequence, enrolled_at: datetime, zone: ZoneInfo, key: str) -> Next | None:
    """The first touch of a fresh enrollment; `key` (e.g. the enrollment id) seeds jitter."""
    return _plan(seq, 0, 0, enrolled_at, zone, key)


def after_done(
    seq: Sequence, step_index: int, occurrence: int, done_at: datetime, zone: ZoneInfo, key: str
) -> Next | None:
    """The touch after one done (sent, skipped, task completed) at `done_at`; None = finished.

    A cron step with `repeat: N` runs occurrences 0..N-1 before the next step. A step index
    past the end (the sequence lost steps since the enrollment began) finishes it.
    """
    if 0 <= step_index < len(seq.steps) and occurrence + 1 < seq.steps[step_index].occurrences:
        return _plan(seq, step_index, occurrence + 1, done_at, zone, key)
    return _plan(seq, step_index + 1, 0, done_at, zone, key)


def upcoming(
    seq: Sequence,
    step_index: int,
    occurrence: int,
    done_at: datetime,
    zone: ZoneInfo,
    key: str,
    lead_fields: Mapping[str, Any],
) -> Next | None:
    """The next touch that applies to a lead with these fields (for `next_touch_at`).

    Steps whose `when:` is false for `lead_fields` are passed over as the sender would skip
    them: at their due time, with the following step counting from there.
    """
    fields = dict(lead_fields)
    nxt = after_done(seq, step_index, occurrence, done_at, zone, key)
    while nxt is not None and not seq.steps[nxt.step_index].applies_to(fields):
        nxt = after_done(seq, nxt.step_index, nxt.occurrence, nxt.due_at, zone, key)
    return nxt


def _plan(
    seq: Sequence, step_index: int, occurrence: int, since: datetime, zone: ZoneInfo, key: str
) -> Next | None:
    if step_index >= len(seq.steps):
        return None
    step = seq.steps[step_index]
    return Next(step_index, occurrence, due_at(step, seq, since, occurrence, zone, key))
