"""The sequence model: what a marketer writes in sequences/*.yaml, as validated values.

Pure: pydantic models with no I/O. authoring/ turns YAML into these and maps validation
errors back to file lines; the scheduler and the sender read them.
"""

from __future__ import annotations

import re
from datetime import date, time
from enum import StrEnum
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from engine.errors import InvalidLead

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
OWNER_WORDS = ("lead", "round-robin")  # a sequence's owner: one of these or a rep's name
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class Strict(BaseModel):
    """Base for every authored model: unknown keys are errors, values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# --- durations -------------------------------------------------------------------------

class Unit(StrEnum):
    minutes = "minutes"
    hours = "hours"
    days = "days"
    weeks = "weeks"
    business_days = "business_days"


_UNIT_WORDS = {
    "m": Unit.minutes, "min": Unit.minutes, "mins": Unit.minutes, "minute": Unit.minutes,
    "minutes": Unit.minutes,
    "h": Unit.hours, "hr": Unit.hours, "hrs": Unit.hours, "hour": Unit.hours,
    "hours": Unit.hours,
    "d": Unit.days, "day": Unit.days, "days": Unit.days,
    "w": Unit.weeks, "week": Unit.weeks, "weeks": Unit.weeks,
    "business day": Unit.business_days, "business days": Unit.business_days,
    "bd": Unit.business_days,
}
_DURATION_RE = re.compile(r"^\s*(\d+)\s*([a-z][a-z ]*?)\s*$")


class Duration(Strict):
    """A step's delay: `0m`, `4h`, `3 days`, `2 business days`, `1 week`."""

    amount: int
    unit: Unit

    @classmethod
    def parse(cls, text: str) -> Duration:
        m = _DURATION_RE.match(str(text).lower())
        unit = _UNIT_WORDS.get(m.group(2)) if m else None
        if not m or unit is None:
            raise ValueError(
                f"'{text}' is not a duration; write a number and a unit, e.g. "
                "'0m', '4h', '3 days', '2 business days' or '1 week'"
            )
        return cls(amount=int(m.group(1)), unit=unit)

    def __str__(self) -> str:
        return f"{self.amount} {self.unit.value.replace('_', ' ')}"


def _to_duration(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        if value != 0:  # `after: 3` meant days as often as minutes: ask, never guess
            raise ValueError(f"{value} has no unit; write e.g. '{value}m', '{value}h' or "
                             f"'{value} days'")
        return Duration(amount=0, unit=Unit.minutes)
    if isinstance(value, str):
        return Duration.parse(value)
    return value


DurationField = Annotated[Duration, BeforeValidator(_to_duration)]

_CRON_FIELDS = (("minute", "0-59"), ("hour", "0-23"), ("day-of-month", "1-31"),
                ("month", "1-12 or jan-dec"), ("day-of-week", "0-6 or sun-sat"))


def _cron_problem(expr: str) -> str:
    """Which part of a cron expression is wrong, said the way a person can fix it."""
    from croniter import croniter  # pure computation, no I/O

    fields = expr.split()
    if len(fields) != 5:
        return (f"it has {len(fields)} field{'s' if len(fields) != 1 else ''}; write five: "
                "minute hour day-of-month month day-of-week")
    for i, ((what, values), field) in enumerate(zip(_CRON_FIELDS, fields, strict=True)):
        alone = ["*"] * 5
        alone[i] = field
        if not croniter.is_valid(" ".join(alone)):
            return f"its {what} field '{field}' is not valid (write {values})"
    return "its fields do not go together"


# --- time zones and send windows -------------------------------------------------------

def check_timezone(name: str) -> str:
    if not isinstance(name, str):  # e.g. `"timezone": 7` in a lead file
        raise ValueError(f"a time zone is a name such as 'Europe/Berlin', not {name!r}")
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone '{name}'; use an IANA name such as 'Europe/Berlin' "
            "or 'America/New_York'"
        ) from None
    return name


def _parse_days(value: Any) -> frozenset[int]:
    """`mon-fri`, `mon,wed,fri`, `[mon, tue]`, `all` -> weekday numbers (Monday = 0)."""
    if isinstance(value, (list, tuple, set, frozenset)):
        parts = [str(v).strip().lower() for v in value]
    else:
        text = str(value).strip().lower()
        if text in ("all", "any", "every day", "daily"):
            return frozenset(range(7))
        parts = [p.strip() for p in text.split(",")]
    days: set[int] = set()
    for part in parts:
        lo, _, hi = part.partition("-")
        if lo[:3] not in WEEKDAYS or (hi and hi[:3] not in WEEKDAYS):
            raise ValueError(
                f"'{part}' is not a day or a range of days; write e.g. 'mon-fri' or 'mon,wed,fri'"
            )
        a = WEEKDAYS.index(lo[:3])
        b = WEEKDAYS.index(hi[:3]) if hi else a
        days.update(range(a, b + 1) if a <= b else [*range(a, 7), *range(0, b + 1)])
    if not days:
        raise ValueError("a send window needs at least one day, e.g. 'mon-fri'")
    return frozenset(days)


_HOURS_RE = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")


class SendWindow(Strict):
    """When email may leave, in the lead's (or the sequence's) local time."""

    days: Annotated[frozenset[int], BeforeValidator(_parse_days)] = frozenset(range(5))
    hours: str = "08:00-18:00"
    holidays: list[date] = Field(default_factory=list)

    @field_validator("hours")
    @classmethod
    def _check_hours(cls, v: str) -> str:
        m = _HOURS_RE.match(v)
        if not m:
            raise ValueError(f"'{v}' is not a range of hours; write e.g. '08:30-17:30'")
        h1, m1, h2, m2 = map(int, m.groups())
        if not (h1 < 24 and h2 <= 24 and m1 < 60 and m2 < 60):
            raise ValueError(f"'{v}' has an impossible time of day")
        if (h1, m1) >= (h2, m2):
            raise ValueError(f"'{v}' ends before it starts; windows cannot cross midnight")
        return v

    @property
    def start(self) -> time:
        h, m = self.hours.split("-")[0].strip().split(":")
        return time(int(h), int(m))

    @property
    def end(self) -> time:
        h, m = self.hours.split("-")[1].strip().split(":")
        return time(23, 59, 59) if int(h) == 24 else time(int(h), int(m))


def _window_or_any(value: Any) -> Any:
    return None if value in ("any", "anytime", None) else value


WindowField = Annotated[SendWindow | None, BeforeValidator(_window_or_any)]


# --- steps -----------------------------------------------------------------------------

Stage = str  # e.g. awareness, consideration, decision: free names, chosen per sequence


class EmailSpec(Strict):
    """An email step: one template, or one per stage (read at send time)."""

    template: str | dict[Stage, str]
    thread: Literal["new", "previous"] = "new"

    def template_for(self, stage: str | None) -> str:
        """The template for the lead's stage; `default` (or the first one) otherwise."""
        if isinstance(self.template, str):
            return self.template
        if stage and stage in self.template:
            return self.template[stage]
        return self.template.get("default") or next(iter(self.template.values()))

    @property
    def templates(self) -> list[str]:
        return [self.template] if isinstance(self.template, str) else list(self.template.values())


class TaskKind(StrEnum):
    call = "call"
    voicemail = "voicemail"
    linkedin = "linkedin"
    handwritten_note = "handwritten_note"
    other = "other"


class TaskSpec(Strict):
    """A manual touch for the lead's owner: call, voicemail, LinkedIn, handwritten note."""

    kind: TaskKind
    note: str = ""


Scalar = str | int | float | bool | None


class Step(Strict):
    """One touch of a sequence. `after` counts from the previous touch (or enrollment)."""

    name: str
    after: DurationField | None = None
    cron: str | None = None
    repeat: int | None = Field(default=None, ge=1, le=1000)
    send_window: WindowField | Literal["inherit"] = "inherit"
    when: dict[str, Scalar | list[Scalar]] | None = None
    email: EmailSpec | None = None
    task: TaskSpec | None = None

    @field_validator("name")
    @classmethod
    def _check_name(cls, v: str) -> str:
        if not NAME_RE.match(v):
            raise ValueError(
                f"step name '{v}' must be lower-case letters, digits, '-' or '_'"
            )
        return v

    @field_validator("cron")
    @classmethod
    def _check_cron(cls, v: str | None) -> str | None:
        if v is not None:
            from croniter import croniter  # pure computation, no I/O

            if not croniter.is_valid(v):
                raise ValueError(f"'{v}' is not a cron expression: {_cron_problem(v)}; "
                                 "e.g. '0 10 * * tue#1' is 10:00 on the first Tuesday of "
                                 "each month")
        return v

    @model_validator(mode="after")
    def _check_shape(self) -> Step:
        if (self.email is None) == (self.task is None):
            raise ValueError(f"step '{self.name}' needs exactly one of 'email' or 'task'")
        if self.cron is None and self.after is None:
            raise ValueError(f"step '{self.name}' needs 'after' (e.g. '2 days') or 'cron'")
        if self.cron is not None and self.after is not None:
            raise ValueError(f"step '{self.name}' has both 'after' and 'cron'; keep one")
        if self.repeat is not None and self.cron is None:
            raise ValueError(f"step '{self.name}': 'repeat' only goes with 'cron'")
        return self

    @property
    def channel(self) -> str:
        return "email" if self.email else "task"

    @property
    def occurrences(self) -> int:
        return self.repeat or 1

    def window(self, default: SendWindow | None) -> SendWindow | None:
        return default if self.send_window == "inherit" else self.send_window  # type: ignore[return-value]

    def applies_to(self, lead_fields: dict[str, Any]) -> bool:
        """The `when:` condition: every named field equals the value (or one of the list)."""
        for key, expected in (self.when or {}).items():
            actual = lead_fields.get(key)
            allowed = expected if isinstance(expected, list) else [expected]
            if actual not in allowed and str(actual) not in [str(a) for a in allowed]:
                return False
        return True


# --- rules and the sequence ------------------------------------------------------------

class Rules(Strict):
    """What inbound mail does to an enrollment (defaults as the field expects)."""

    reply: Literal["handoff", "stop"] = "handoff"
    auto_reply: Literal["pause", "ignore"] = "pause"
    auto_reply_pause: DurationField = Duration(amount=3, unit=Unit.business_days)
    bounce: Literal["stop"] = "stop"
    soft_bounce_limit: int = Field(default=3, ge=1)
    # A soft-bounced email (the relay gave up: mailbox full, a temporary refusal) goes out
    # again this long after the bounce, until soft_bounce_limit suppresses the address.
    soft_bounce_retry: DurationField = Duration(amount=1, unit=Unit.days)
    unsubscribe: Literal["stop"] = "stop"


class OnFinish(Strict):
    enroll: str


class Sequence(Strict):
    """A named series of steps sent from one mailbox."""

    name: str
    description: str = ""
    mailbox: str = "default"
    owner: str = "round-robin"  # 'round-robin', 'lead' (the lead's owner) or a rep's name
    timezone: str = "lead"  # 'lead' or an IANA zone
    send_window: WindowField = SendWindow()
    jitter: DurationField = Duration(amount=3, unit=Unit.minutes)
    in_doubt: Literal["hold", "resend"] = "hold"
    on_finish: OnFinish | None = None
    rules: Rules = Rules()
    sample_lead: dict[str, Any] = Field(default_factory=dict)
    steps: list[Step] = Field(min_length=1)

    @field_validator("name")
    @classmethod
    def _check_name(cls, v: str) -> str:
        if not NAME_RE.match(v):
            raise ValueError(f"sequence name '{v}' must be lower-case letters, digits, '-' or '_'")
        return v

    @field_validator("timezone")
    @classmethod
    def _check_tz(cls, v: str) -> str:
        return v if v == "lead" else check_timezone(v)

    @model_validator(mode="after")
    def _unique_steps(self) -> Sequence:
        seen: set[str] = set()
        for step in self.steps:
            if step.name in seen:
                raise ValueError(f"two steps are named '{step.name}'; step names must be unique")
            seen.add(step.name)
        return self

    def step(self, name: str) -> Step:
        for s in self.steps:
            if s.name == name:
                return s
        raise KeyError(name)

    def zone(self, lead_timezone: str | None, default: str) -> ZoneInfo:
        """The zone a lead's schedule is computed in."""
        if self.timezone != "lead":
            return ZoneInfo(self.timezone)
        try:
            return ZoneInfo(lead_timezone or default)
        except (ZoneInfoNotFoundError, ValueError, TypeError):
            return ZoneInfo(default)


def check_lead_timezone(value: Any) -> str:
    """A lead's time zone as every way in accepts it (enroll, import, the API, preview and
    simulate): empty (the default zone applies) or an IANA name; InvalidLead otherwise."""
    if value is None or value == "":
        return ""
    try:
        return check_timezone(value)
    except ValueError as exc:
        raise InvalidLead(f"timezone: {exc}") from None
