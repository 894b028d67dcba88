"""What lead data may contain, checked where it enters (API, CLI --set, CSV, stage change).

Names, company, owner and stage end up in headers (To, notifications) and on rep pages:
a line break there is at best a failed send after the lead was enrolled, at worst header
injection (compose refuses it too, but by then the enrollment is stopped). So every control
character (C0, DEL, C1 including NEL) and the Unicode line and paragraph separators are
refused at the boundary, with the field, the character and how to fix it. Custom field
values may hold line breaks (templates put them in bodies); their keys may not.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from typing import Any

from engine.errors import InvalidLead

# The longest value of each checked column (the API's limits, now for every entry point).
LIMITS = {"first_name": 200, "last_name": 200, "company": 200, "owner": 200, "stage": 64,
          "source": 100}
MAX_FIELD_KEY = 64
_SEPARATORS = {"\u2028": "line separator", "\u2029": "paragraph separator"}


def bad_character(text: str) -> tuple[int, str] | None:
    """The first control character or line/paragraph separator: (position, description)."""
    for i, c in enumerate(text):
        if c in _SEPARATORS:
            return i, f"U+{ord(c):04X} {_SEPARATORS[c]}"
        if unicodedata.category(c) == "Cc":
            name = {"\n": "line feed", "\r": "carriage return", "\t": "tab",
                    "\x00": "NUL", "\x85": "next line"}.get(c, "control character")
            return i, f"U+{ord(c):04X} {name}"
    return None


def text_problem(field: str, value: str) -> str | None:
    """Why `value` cannot be the lead's `field`, or None when it can."""
    found = bad_character(value)
    if found is not None:
        at, what = found
        return (f"{field}: {value[:40]!r} contains a {what} (character {at + 1}); lead data "
                "must be one line of printable text: remove line breaks and control characters")
    limit = LIMITS.get(field)
    if limit is not None and len(value) > limit:
        return f"{field}: {len(value)} characters is too long; at most {limit}"
    return None


def key_problem(key: str) -> str | None:
    """Why `key` cannot name a custom field, or None when it can."""
    if not key.strip():
        return ("fields: a value sits in a column (or key) without a name; name the column "
                "or remove the value")
    found = bad_character(key)
    if found is not None:
        return (f"fields: the field name {key[:40]!r} contains a {found[1]}; use letters, "
                "digits and underscores, e.g. use_case")
    if len(key) > MAX_FIELD_KEY:
        return f"fields: the field name {key[:40]!r}... is too long; at most {MAX_FIELD_KEY}"
    return None


def check_lead_data(columns: Mapping[str, str], custom: Mapping[Any, Any]) -> None:
    """InvalidLead naming every problem at once (the first one's field leads the message)."""
    problems = [p for field, value in columns.items() if (p := text_problem(field, value))]
    problems += [p for key in custom if (p := key_problem("" if key is None else str(key)))]
    if problems:
        raise InvalidLead("; ".join(dict.fromkeys(problems)))


def check_text(field: str, value: str) -> str:
    """`value` stripped, or InvalidLead: one field checked alone (a stage change, a source)."""
    text = (value or "").strip()
    problem = text_problem(field, text)
    if problem:
        raise InvalidLead(problem)
    return text
