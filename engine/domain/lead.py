"""A lead as the services see it, and how free-form lead data splits into columns and fields."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from engine.domain.context import LEAD_KEYS

# Columns of a lead a caller may set (email is the key, source is set by the entry point).
LEAD_COLUMNS = tuple(k for k in LEAD_KEYS if k not in ("email", "source"))


@dataclass(frozen=True)
class LeadRecord:
    id: int
    email: str
    first_name: str = ""
    last_name: str = ""
    company: str = ""
    stage: str = ""
    timezone: str = ""
    owner: str = ""
    source: str = ""
    fields: Mapping[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return " ".join(p for p in (self.first_name, self.last_name) if p)

    def as_mapping(self) -> dict[str, Any]:
        """What template_context and `when:` conditions read: columns plus custom fields."""
        data: dict[str, Any] = {k: getattr(self, k) for k in LEAD_KEYS}
        data["fields"] = dict(self.fields)
        return data

    def condition_fields(self) -> dict[str, Any]:
        """Custom fields overlaid by columns, for `when:` (a column always wins)."""
        data = dict(self.fields)
        data.update({k: getattr(self, k) for k in LEAD_KEYS})
        return data


def split_fields(values: Mapping[str, Any]) -> tuple[dict[str, str], dict[str, Any]]:
    """`first_name=Ada, plan=pro` -> ({first_name: Ada}, {plan: pro}); empty values dropped."""
    columns: dict[str, str] = {}
    custom: dict[str, Any] = {}
    for key, value in values.items():
        if value is None or value == "":
            continue
        if key in LEAD_COLUMNS:
            columns[key] = str(value).strip()
        elif key not in ("email", "source"):
            custom[key] = value
    return columns, custom


@dataclass(frozen=True)
class LeadInput:
    """One lead to enroll, already validated: a normalised address and its data."""

    email: str
    columns: Mapping[str, str] = field(default_factory=dict)
    custom: Mapping[str, Any] = field(default_factory=dict)
    row: int | None = None  # the CSV line it came from, for the import report


@dataclass(frozen=True)
class EnrollOutcome:
    """What enrolling one lead did: `enrolled`, `already` (live in the sequence), `suppressed`,
    `handed_off` (it replied and a rep works it: not enrolled)."""

    email: str
    status: str
    lead_id: int | None = None
    enrollment_id: int | None = None
    due_at: Any = None  # datetime of the first touch, when enrolled
    reason: str = ""
    row: int | None = None
