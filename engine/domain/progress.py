"""Which step of a sequence comes next for an enrollment, and when it falls due.

The daemon and `nurture simulate` both walk a sequence with these functions, so the
timeline a marketer sees is the one the daemon keeps. `when:` conditions and the lead's
stage are not read here: the sender reads them at send time, records a skipped touch and
calls `after_done` like for any other touch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from collections.abc import Sequence as Seq
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from engine.domain.schedule import as_timedelta, due_at, jitter_key, jitter_within, open_span
from engine.domain.sequence import Sequence

# Not a valid step name (see sequence.NAME_RE): "whatever follows the last step it had",
# found when the enrollment is next claimed (its step was removed, or on_finish must wait).
FIND_NEXT = "(next)"


@dataclass(frozen=True)
class Next:
    """The touch an enrollment waits for: a step, its repetition (from 0) and its due time.

    `step_name` is the step's identity; `step_index` is where it stood when planned, a hint
    that holds until someone edits the sequence.
    """

    step_index: int
    occurrence: int
    due_at: datetime
    step_name: str = field(default="", compare=False)


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
    return Next(step_index, occurrence, due_at(step, seq, since, occurrence, zone, key), step.name)


# --- a due enrollment in the sequence as loaded now (it may have been edited) --------------

def index_of(seq: Sequence, step_name: str, step_index: int) -> int | None:
    """Where a step stands now, by name (`step_index`: where it stood); None if removed.

    Without a name (a caller that knows only the position), the position.
    """
    steps = seq.steps
    if not step_name or (0 <= step_index < len(steps) and steps[step_index].name == step_name):
        return step_index if 0 <= step_index < len(steps) else None
    return next((i for i, s in enumerate(steps) if s.name == step_name), None)


@dataclass(frozen=True)
class Place:
    """The step a due enrollment gets now; `moved` when an edit changed which one."""

    step_index: int
    occurrence: int
    moved: bool = False


# The (step name, occurrence) of every touch the enrollment had, oldest first.
Done = Callable[[], Seq[tuple[str, int]]]


def place(seq: Sequence, step_name: str, step_index: int, occurrence: int,
          done: Done) -> Place | None:
    """Where a due enrollment stands in `seq` as loaded now; None = no step is left for it.

    The named step still at its planned index (no edit moved it): that step. An enrollment
    planned before steps had names: its index. Otherwise the sequence was edited: the lead's
    place is just after the last step it had that still exists, and it gets the first step
    from there it has not had. Steps inserted or moved above that place never reach it; a
    step it had is never given again. `done` is only called on that path.
    """
    steps = seq.steps
    in_range = 0 <= step_index < len(steps)
    if not step_name:
        return Place(step_index, occurrence) if in_range else None
    if in_range and steps[step_index].name == step_name:
        return Place(step_index, occurrence)
    return _after_last_done(seq, list(done()), step_name, step_index, occurrence)


def _after_last_done(seq: Sequence, done: list[tuple[str, int]], waiting: str,
                     index: int, occurrence: int) -> Place | None:
    names = [s.name for s in seq.steps]
    had = set(done)
    for name, occ in reversed(done):
        if name not in names:
            continue
        i = names.index(name)
        if occ + 1 < seq.steps[i].occurrences and (name, occ + 1) not in had:
            return Place(i, occ + 1, moved=True)
        return next((Place(j, 0, moved=True) for j in range(i + 1, len(names))
                     if (names[j], 0) not in had), None)
    if waiting in names and (waiting, occurrence) not in had:
        return Place(names.index(waiting), occurrence, moved=True)  # it had nothing left
    if waiting == FIND_NEXT:  # the step it just had was removed: what now stands there
        return next((Place(j, 0, moved=True) for j in range(max(index, 0), len(names))
                     if (names[j], 0) not in had), None)
    if not done and names:
        return Place(0, 0, moved=True)  # it had nothing yet: the top of the sequence
    return None


def window_wait(seq: Sequence, step_index: int, occurrence: int, at: datetime,
                zone: ZoneInfo, key: str) -> datetime | None:
    """When a touch of this step may leave if `at` is outside its send window (else None).

    The next opening plus the step's own jitter (within the opening), so a backlog found at
    night does not leave all at once when the window opens.
    """
    step = seq.steps[step_index]
    window = step.window(seq.send_window)
    if window is None:
        return None
    opens, closes = open_span(at, zone, window)
    if opens <= at:
        return None
    spread = jitter_key(key, step, occurrence)
    return opens + jitter_within(spread, min(as_timedelta(seq.jitter), closes - opens))
