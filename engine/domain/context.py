"""The dict every template sees (lead, sender, sequence, step, touch...) and the date filters.

Pure: no template engine here. authoring/templates.py registers FILTERS with Jinja2; the
sender (services) and `nurture preview` / `validate` build contexts with template_context.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from engine.domain.sequence import Sequence, Step

# A lead's own columns; every other key is a custom field (lead.fields.<name>).
LEAD_KEYS = ("email", "first_name", "last_name", "company", "stage", "timezone", "owner", "source")
SENDER_KEYS = ("name", "email", "signature", "postal_address")


def template_context(
    lead: Mapping[str, Any],
    sender: Mapping[str, Any],
    sequence: Sequence,
    step: Step,
    touch_number: int,
    next_touch_at: datetime | None,
    unsubscribe_url: str,
    zone: ZoneInfo,
) -> dict[str, Any]:
    """Everything a template may use. `next_touch_at` is shown in the lead's zone."""
    return {
        "lead": lead_view(lead),
        "sender": {k: str(sender.get(k) or "") for k in SENDER_KEYS},
        "sequence": {"name": sequence.name, "description": sequence.description},
        "step": {"name": step.name},
        "touch_number": touch_number,
        "next_touch_at": next_touch_at.astimezone(zone) if next_touch_at else None,
        "unsubscribe_url": unsubscribe_url,
    }


def lead_view(lead: Mapping[str, Any]) -> dict[str, Any]:
    """`lead.first_name`, and custom fields both as `lead.fields.x` and as `lead.x`.

    A custom field never hides a column: `lead.email` is always the lead's address.
    """
    fields = dict(lead.get("fields") or {})
    fields.update({k: v for k, v in lead.items() if k not in LEAD_KEYS and k != "fields"})
    view: dict[str, Any] = dict(fields)
    view.update({k: "" if lead.get(k) is None else lead.get(k) for k in LEAD_KEYS})
    view["fields"] = fields
    return view


def default_sample_lead() -> dict[str, Any]:
    """The lead `validate` and `preview` render with; a sequence's sample_lead goes over it."""
    return {
        "email": "ada.lovelace@example.com",
        "first_name": "Ada",
        "last_name": "Lovelace",
        "company": "Analytical Engines Ltd",
        "stage": "awareness",
        "timezone": "Europe/London",
        "owner": "",
        "source": "web-form",
        "fields": {},
    }


def sample_lead(overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The default sample lead with `overrides` merged in (unknown keys become custom fields)."""
    lead = default_sample_lead()
    for key, value in (overrides or {}).items():
        if key == "fields" and isinstance(value, Mapping):
            lead["fields"].update(value)
        elif key in LEAD_KEYS:
            lead[key] = value
        else:
            lead["fields"][key] = value
    return lead


def default_sample_sender() -> dict[str, str]:
    """The sender `validate` renders with when no mailbox is configured."""
    return {
        "name": "Sam Rivera",
        "email": "sam@example.com",
        "signature": "Sam Rivera\nAccount Executive, Example Inc.",
        "postal_address": "Example Inc., 100 Main Street, Springfield, IL 62701, USA",
    }


# --- filters templates use to write dates the way people do ---------------------------

def _need_date(value: Any, filter_name: str) -> datetime:
    if not isinstance(value, datetime):
        raise ValueError(
            f"'{filter_name}' needs a date but got {'nothing' if value is None else repr(value)}"
            " (next_touch_at is empty on the last touch; guard it with "
            "{% if next_touch_at %}...{% endif %})"
        )
    return value


def weekday(value: Any) -> str:
    """`{{ next_touch_at | weekday }}` -> "Tuesday"."""
    return _need_date(value, "weekday").strftime("%A")


def nice_date(value: Any) -> str:
    """`{{ next_touch_at | nice_date }}` -> "Tuesday, March 4"."""
    when = _need_date(value, "nice_date")
    return f"{when:%A, %B} {when.day}"


def time_of_day(value: Any) -> str:
    """`{{ next_touch_at | time_of_day }}` -> "9:30 AM"."""
    when = _need_date(value, "time_of_day")
    return f"{(when.hour % 12) or 12}:{when:%M %p}"


FILTERS: dict[str, Callable[[Any], str]] = {
    "weekday": weekday,
    "nice_date": nice_date,
    "time_of_day": time_of_day,
}
