"""Read-only numbers for the marketer page and /metrics: per sequence and step, per mailbox.

Replies, auto-replies and bounces are attributed to the touch they answered: the matched
touch when the watcher found one (In-Reply-To, References, returned message), else the lead's
last touch sent before the message arrived. An unsubscribe is attributed to the last touch
of the enrollment it stopped. A bounce is an address that refused mail: a bounce report, or
an SMTP 5xx at send time; any other touch that failed (a template that could not render,
retries given up) is "failed". Tasks done are counted apart from emails sent. Counting happens
in Python so SQLite and PostgreSQL agree.
"""

from __future__ import annotations

import bisect
import statistics
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, text

from engine.domain.states import HandoffState, InboundKind, TouchState
from engine.store.db import Database
from engine.store.tables import Enrollment, Handoff, InboundMessage, Touch

T, E, IN, H = Touch.__table__, Enrollment.__table__, InboundMessage.__table__, Handoff.__table__
DONE = (TouchState.sent.value, TouchState.done.value)
BOUNCES = (InboundKind.bounce_hard.value, InboundKind.bounce_soft.value)
COUNTED = (InboundKind.human_reply.value, InboundKind.auto_reply.value, *BOUNCES)


@dataclass
class Counts:
    """One row of the marketer page (a sequence, or one of its steps)."""

    name: str
    enrolled: int = 0  # a sequence: enrollments; a step: enrollments that reached it
    sent: int = 0  # emails sent
    tasks_done: int = 0  # task steps (calls, notes) a rep marked done
    replied: int = 0  # enrollments with a human reply to this sequence / step
    auto_replied: int = 0
    bounced: int = 0  # bounce reports, and SMTP 5xx refusals at send time
    failed: int = 0  # touches that failed otherwise (render error, retries given up)
    unsubscribed: int = 0
    contacted: int = 0  # enrollments with at least one email sent (reply-rate base)
    delays: list[float] = field(default_factory=list, repr=False)  # seconds

    @property
    def reply_rate(self) -> float | None:
        return self.replied / self.contacted if self.contacted else None

    @property
    def median_to_touch(self) -> float | None:
        """Median seconds from enrollment to the first touch (a step: to this touch)."""
        return statistics.median(self.delays) if self.delays else None


    def as_dict(self) -> dict[str, object]:
        """The JSON form shared by /stats and `nurture stats --json`."""
        keys = ("name", "enrolled", "sent", "tasks_done", "replied", "auto_replied", "bounced",
                "failed", "unsubscribed", "contacted", "reply_rate", "median_to_touch")
        return {k: getattr(self, k) for k in keys}


@dataclass
class SequenceStats:
    totals: Counts
    steps: list[Counts]

    def as_dict(self) -> dict[str, object]:
        return {"sequence": self.totals.name, "totals": self.totals.as_dict(),
                "steps": [c.as_dict() for c in self.steps]}


def step_names(sequences: Mapping[str, Any]) -> dict[str, list[str]]:
    """Sequence name -> its step names (from the loaded sequences), for StatsStore.sequences."""
    return {name: [step.name for step in seq.steps] for name, seq in sequences.items()}


@dataclass(frozen=True)
class _Touch:
    id: int
    enrollment_id: int
    lead_id: int
    sequence: str
    step_index: int
    step_name: str
    channel: str
    state: str
    sent_at: datetime | None
    smtp_code: int | None = None

    @property
    def refused(self) -> bool:
        """Failed on an SMTP 5xx: the address or the message was refused, a bounce."""
        return self.state == TouchState.failed.value and 500 <= (self.smtp_code or 0) < 600


class StatsStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def ping(self) -> None:
        """Raise unless the database answers a query."""
        with self.db.read() as conn:
            conn.execute(text("SELECT 1"))

    def touch_counts(self) -> dict[tuple[str, str], int]:
        """Email touches sent and failed, by (mailbox, state)."""
        with self.db.read() as conn:
            rows = conn.execute(
                select(T.c.mailbox, T.c.state, func.count())
                .where(T.c.channel == "email",
                       T.c.state.in_((TouchState.sent.value, TouchState.failed.value)))
                .group_by(T.c.mailbox, T.c.state))
            return {(r[0], r[1]): r[2] for r in rows}

    def handoffs(self) -> dict[str, int]:
        """Handoffs not closed yet, by state (open = unclaimed, claimed)."""
        with self.db.read() as conn:
            rows = conn.execute(select(H.c.state, func.count())
                                .where(H.c.state != HandoffState.closed.value)
                                .group_by(H.c.state))
            counts = {s.value: 0 for s in HandoffState if s is not HandoffState.closed}
            counts.update({r[0]: r[1] for r in rows})
            return counts

    def sequences(self, steps: Mapping[str, Sequence[str]] | None = None) -> list[SequenceStats]:
        """Every sequence with enrollments, its steps in order. `steps` (sequence -> step
        names, from the catalog) lists the steps no lead reached yet, and the sequences no
        lead was enrolled in, with zeros."""
        with self.db.read() as conn:
            enrollments = list(conn.execute(select(
                E.c.id, E.c.sequence, E.c.enrolled_at, E.c.stop_reason)))
            touches = [_Touch(*r) for r in conn.execute(select(
                T.c.id, T.c.enrollment_id, T.c.lead_id, T.c.sequence, T.c.step_index,
                T.c.step_name, T.c.channel, T.c.state, T.c.sent_at, T.c.smtp_code)
                .order_by(T.c.id))]
            inbound = list(conn.execute(
                select(IN.c.lead_id, IN.c.touch_id, IN.c.kind, IN.c.received_at)
                .where(IN.c.kind.in_(COUNTED), IN.c.lead_id.isnot(None))))
        return _tally(enrollments, touches, inbound, steps or {})


# --- counting -----------------------------------------------------------------------------

Key = tuple[str, int | None, int]  # (sequence, step index or None, enrollment id)


def _tally(enrollments: list[Any], touches: list[_Touch], inbound: list[Any],
           names: Mapping[str, Sequence[str]] | None = None) -> list[SequenceStats]:
    seqs: dict[str, Counts] = {}
    steps: dict[tuple[str, int], Counts] = {}
    for sequence, step_names in (names or {}).items():
        seqs[sequence] = Counts(sequence)
        for i, step in enumerate(step_names):
            steps[(sequence, i)] = Counts(step)
    for e in enrollments:
        seqs.setdefault(e.sequence, Counts(e.sequence)).enrolled += 1
    _count_touches(touches, {e.id: e.enrolled_at for e in enrollments}, seqs, steps)
    answered = _attribute(enrollments, touches, inbound)
    for attr, keys in answered.items():
        _add(keys, attr, seqs, steps)
    return [SequenceStats(seqs[name], [c for (s, _), c in sorted(steps.items(),
                                                                key=lambda kv: kv[0][1])
                                       if s == name])
            for name in sorted(seqs)]


def _count_touches(touches: list[_Touch], enrolled_at: dict[int, datetime],
                   seqs: dict[str, Counts], steps: dict[tuple[str, int], Counts]) -> None:
    reached: dict[tuple[str, int], set[int]] = defaultdict(set)
    first: dict[int, _Touch] = {}  # each enrollment's first email sent
    for t in touches:
        seqs.setdefault(t.sequence, Counts(t.sequence))
        step = steps.setdefault((t.sequence, t.step_index), Counts(t.step_name))
        reached[(t.sequence, t.step_index)].add(t.enrollment_id)
        if t.state not in DONE or t.sent_at is None:
            continue
        start = enrolled_at.get(t.enrollment_id)
        if start is not None:
            step.delays.append((t.sent_at - start).total_seconds())
        if t.channel != "email":
            step.tasks_done += 1
            seqs[t.sequence].tasks_done += 1
            continue
        step.sent += 1
        step.contacted += 1
        seqs[t.sequence].sent += 1
        prev = first.get(t.enrollment_id)
        if prev is None or (prev.sent_at and t.sent_at < prev.sent_at):
            first[t.enrollment_id] = t
    for key, ids in reached.items():
        steps[key].enrolled = len(ids)
    for enrollment_id, t in first.items():
        seq = seqs[t.sequence]
        seq.contacted += 1
        start = enrolled_at.get(enrollment_id)
        if start is not None and t.sent_at is not None:
            seq.delays.append((t.sent_at - start).total_seconds())


def _attribute(enrollments: list[Any], touches: list[_Touch],
               inbound: list[Any]) -> dict[str, set[Key]]:
    """Which (sequence, step, enrollment) each reply, auto-reply, bounce, failure and
    unsubscribe hit."""
    out: dict[str, set[Key]] = {a: set() for a in
                                ("replied", "auto_replied", "bounced", "failed", "unsubscribed")}
    by_id = {t.id: t for t in touches}
    sent_by_lead = _sent_by_lead(touches)
    for row in inbound:
        touch: _Touch | None = by_id.get(row.touch_id) if row.touch_id else None
        touch = touch or _last_before(sent_by_lead.get(row.lead_id, []), row.received_at)
        if touch is None:
            continue
        attr = ("bounced" if row.kind in BOUNCES else
                "replied" if row.kind == InboundKind.human_reply.value else "auto_replied")
        out[attr].add((touch.sequence, touch.step_index, touch.enrollment_id))
    last: dict[int, _Touch] = {}
    for t in touches:
        if t.state in DONE and t.sent_at is not None:
            last[t.enrollment_id] = t  # touches come in id order: the last one wins
        elif t.state == TouchState.failed.value:
            out["bounced" if t.refused else "failed"].add(
                (t.sequence, t.step_index, t.enrollment_id))
    for e in enrollments:
        if e.stop_reason == "unsubscribe":
            final = last.get(e.id)
            out["unsubscribed"].add((e.sequence, final.step_index if final else None, e.id))
    return out


def _sent_by_lead(touches: list[_Touch]) -> dict[int, list[_Touch]]:
    out: dict[int, list[_Touch]] = defaultdict(list)
    for t in touches:
        if t.state in DONE and t.sent_at is not None and t.channel == "email":
            out[t.lead_id].append(t)
    for items in out.values():
        items.sort(key=lambda t: t.sent_at or datetime.min)
    return out


def _last_before(sent: list[_Touch], at: datetime) -> _Touch | None:
    """The lead's last email sent at or before `at`."""
    i = bisect.bisect_right([t.sent_at or datetime.min for t in sent], at)
    return sent[i - 1] if i else None


def _add(keys: set[Key], attr: str, seqs: dict[str, Counts],
         steps: dict[tuple[str, int], Counts]) -> None:
    """Count distinct enrollments per sequence and per step."""
    per_sequence: dict[str, set[int]] = defaultdict(set)
    for sequence, step_index, enrollment in keys:
        per_sequence[sequence].add(enrollment)
        step = steps.get((sequence, step_index)) if step_index is not None else None
        if step is not None:
            setattr(step, attr, getattr(step, attr) + 1)
    for sequence, ids in per_sequence.items():
        seq = seqs.setdefault(sequence, Counts(sequence))
        setattr(seq, attr, getattr(seq, attr) + len(ids))
