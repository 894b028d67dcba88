"""The dated timeline a lead would get (`nurture simulate`), walked as the daemon walks it.

Every touch is planned by progress.py, exactly like the daemon: emails leave and tasks are
done at their due time, `when:` is read at that moment with the lead's stage at that moment,
`on_finish.enroll` continues in the next sequence, and a reply stops everything.
"""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Sequence as Seq
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

from engine.domain.progress import Next, after_done, first_due, upcoming
from engine.domain.schedule import as_utc
from engine.domain.sequence import Sequence, Step, check_timezone
from engine.errors import ConfigError, ScheduleError, UnknownSequence

Status = Literal["scheduled", "skipped", "stopped"]


@dataclass(frozen=True)
class Entry:
    """One row of the timeline: a touch planned, a touch skipped, or the stop by a reply."""

    at: datetime  # UTC
    local: datetime  # the same instant in the lead's zone
    zone: str
    sequence: str
    step: str
    step_index: int
    occurrence: int
    touch_number: int | None  # 1-based count of touches made in this enrollment; None if not made
    channel: str  # 'email' | 'task'
    template: str | None  # email: the template for the stage at that moment
    task_kind: str | None  # task: call, voicemail, ...
    task_note: str | None  # task: the note's Jinja2 source (the CLI renders it)
    stage: str | None  # the lead's stage at that moment
    status: Status
    reason: str = ""  # why skipped / stopped
    next_at: datetime | None = None  # the following touch of this sequence (next_touch_at)


@dataclass
class _Run:
    """One simulation's inputs and the rows so far."""

    sequences: Mapping[str, Sequence]
    lead: Mapping[str, Any]
    default_timezone: str
    reply_at: datetime | None
    stage_changes: list[tuple[datetime, str]]
    max_entries: int
    entries: list[Entry] = field(default_factory=list)

    def stage_at(self, moment: datetime) -> str | None:
        stage = self.lead.get("stage")
        for changed_at, new_stage in self.stage_changes:
            if changed_at <= moment:
                stage = new_stage
        return stage

    def fields_at(self, moment: datetime) -> dict[str, Any]:
        return {**self.lead, "stage": self.stage_at(moment)}

    @property
    def full(self) -> bool:
        return len(self.entries) >= self.max_entries


def simulate(
    sequences: Mapping[str, Sequence],
    name: str,
    lead: Mapping[str, Any],
    start: datetime,
    default_timezone: str,
    reply_at: datetime | None = None,
    stage_changes: Seq[tuple[datetime, str]] = (),
    max_entries: int = 500,
) -> list[Entry]:
    """The timeline of `lead` enrolled in sequence `name` at `start`.

    Stops at `reply_at` (a final 'stopped' row) and after `max_entries` rows (which also
    ends on_finish cycles): a list of exactly `max_entries` rows may have been cut short.
    Jitter is seeded from the lead's email, so it differs from the daemon's by seconds.
    """
    _check_zone(default_timezone)
    try:
        run = _Run(
            sequences=sequences,
            lead=lead,
            default_timezone=default_timezone,
            reply_at=as_utc(reply_at, "the reply time") if reply_at is not None else None,
            stage_changes=sorted((as_utc(at, "a stage change"), s) for at, s in stage_changes),
            max_entries=max_entries,
        )
        _run(run, _lookup(sequences, name, None), as_utc(start, "the start"))
    except OverflowError:  # datetime ends with the year 9999
        raise ScheduleError(
            f"the timeline runs past the year 9999, the last date that can be computed; "
            f"start it earlier (it starts {start:%Y-%m-%d})"
        ) from None
    return run.entries[:max_entries]


def _run(run: _Run, seq: Sequence, enrolled_at: datetime) -> None:
    """Walk enrollment after enrollment (on_finish) until the timeline ends or is full."""
    count = 0
    while not run.full:
        key = f"{run.lead.get('email', '')}/{seq.name}/{count}"
        finished_at = _walk(run, seq, enrolled_at, key)
        if finished_at is None or seq.on_finish is None:
            break
        seq = _lookup(run.sequences, seq.on_finish.enroll, seq.name)
        enrolled_at, count = finished_at, count + 1


def _walk(run: _Run, seq: Sequence, enrolled_at: datetime, key: str) -> datetime | None:
    """Add one enrollment's rows; the time it finished, or None if stopped or cut short."""
    zone = seq.zone(run.lead.get("timezone"), run.default_timezone)
    nxt, touches, last = first_due(seq, enrolled_at, zone, key), 0, enrolled_at
    while nxt is not None:
        if run.full:
            return None
        if run.reply_at is not None and nxt.due_at >= run.reply_at:
            run.entries.append(_stopped(run, seq, nxt, zone))
            return None
        step = seq.steps[nxt.step_index]
        fields = run.fields_at(nxt.due_at)
        made = step.applies_to(fields)
        touches += made
        following = upcoming(seq, nxt.step_index, nxt.occurrence, nxt.due_at, zone, key, fields)
        run.entries.append(
            _row(seq, step, nxt, zone, fields, touches if made else None, following)
        )
        last = nxt.due_at
        nxt = after_done(seq, nxt.step_index, nxt.occurrence, nxt.due_at, zone, key)
    return last


def _row(
    seq: Sequence,
    step: Step,
    nxt: Next,
    zone: ZoneInfo,
    fields: dict[str, Any],
    touch_number: int | None,
    following: Next | None,
) -> Entry:
    stage = fields.get("stage")
    made = touch_number is not None
    return _entry(
        seq, nxt, zone, nxt.due_at, stage,
        touch_number=touch_number,
        template=step.email.template_for(stage) if step.email else None,
        task_kind=step.task.kind.value if step.task else None,
        task_note=step.task.note if step.task else None,
        status="scheduled" if made else "skipped",
        reason="" if made else skip_reason(step, fields),
        next_at=following.due_at if following else None,
    )


def _stopped(run: _Run, seq: Sequence, nxt: Next, zone: ZoneInfo) -> Entry:
    assert run.reply_at is not None
    local = run.reply_at.astimezone(zone)
    outcome = "; handed to a rep" if seq.rules.reply == "handoff" else ""
    return _entry(seq, nxt, zone, run.reply_at, run.stage_at(run.reply_at), status="stopped",
                  reason=f"reply on {local:%a %Y-%m-%d %H:%M %Z} stops the sequence{outcome}")


def _entry(seq: Sequence, nxt: Next, zone: ZoneInfo, at: datetime, stage: str | None,
           **rest: Any) -> Entry:
    """The one Entry builder: the step's fields, plus `rest` over the defaults of a row
    that made no touch (no number, template, task)."""
    step = seq.steps[nxt.step_index]
    defaults: dict[str, Any] = {"touch_number": None, "template": None, "task_kind": None,
                                "task_note": None}
    return Entry(at=at, local=at.astimezone(zone), zone=zone.key, sequence=seq.name,
                 step=step.name, step_index=nxt.step_index, occurrence=nxt.occurrence,
                 channel=step.channel, stage=stage, **{**defaults, **rest})


def skip_reason(step: Step, fields: Mapping[str, Any]) -> str:
    """Why `when:` is false, e.g. "when: stage is decision, lead's stage is awareness"."""
    parts = []
    for name, expected in (step.when or {}).items():
        if step.model_copy(update={"when": {name: expected}}).applies_to(dict(fields)):
            continue
        wanted = (
            "one of " + ", ".join(map(str, expected)) if isinstance(expected, list) else expected
        )
        actual = fields.get(name)
        has = f"lead's {name} is {actual}" if actual not in (None, "") else f"lead has no {name}"
        parts.append(f"when: {name} is {wanted}, {has}")
    return "; ".join(parts)


def _lookup(sequences: Mapping[str, Sequence], name: str, from_seq: str | None) -> Sequence:
    if name in sequences:
        return sequences[name]
    known = ", ".join(sorted(sequences)) or "none"
    if from_seq is None:
        raise UnknownSequence(f"no sequence is named '{name}' (known: {known})")
    raise UnknownSequence(
        f"sequence '{from_seq}' enrolls into '{name}' when it finishes (on_finish), "
        f"but no sequence is named '{name}' (known: {known})"
    )


def _check_zone(name: str) -> None:
    try:
        check_timezone(name)
    except ValueError as exc:
        raise ConfigError(f"default_timezone: {exc}") from None
