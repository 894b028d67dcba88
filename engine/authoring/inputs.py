"""What a marketer types for preview and simulate: a lead (JSON file, key=value) and times."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from engine.domain.context import LEAD_KEYS, sample_lead
from engine.domain.sequence import check_lead_timezone
from engine.errors import InvalidLead


def lead_from_inputs(
    sequence_sample: Mapping[str, Any], lead_file: Path | None, sets: Iterable[str]
) -> dict[str, Any]:
    """The lead to render for: a JSON file and/or each --set, else the sequence's sample lead.

    A given lead starts with empty columns rather than the sample's values, as the daemon
    sees it: no time zone means default_timezone, and a template that needs a field the lead
    lacks fails here as it would at send time.
    """
    given = dict(parse_set(item) for item in sets)
    if lead_file is None and not given:
        lead = sample_lead(sequence_sample)
    else:
        lead = sample_lead({k: "" for k in LEAD_KEYS})
        if lead_file is not None:
            lead = _merge(lead, read_lead_file(lead_file))
        lead = _merge(lead, given)
    check_lead_timezone(lead.get("timezone"))  # refused here exactly as `enroll` refuses it
    return lead


def _merge(lead: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    merged = {**lead, "fields": dict(lead.get("fields") or {})}
    for key, value in extra.items():
        if key == "fields" and isinstance(value, Mapping):
            merged["fields"].update(value)
        elif key.startswith("fields."):
            merged["fields"][key.removeprefix("fields.")] = value
        elif key in LEAD_KEYS:
            merged[key] = value
        else:
            merged["fields"][key] = value
    return merged


def read_lead_file(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise InvalidLead(f"{path}: cannot read the lead file ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise InvalidLead(f"{path}: the lead file is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise InvalidLead(f"{path}:{exc.lineno}: not valid JSON: {exc.msg}") from None
    if not isinstance(data, dict):
        raise InvalidLead(f"{path}: the lead file must hold one JSON object, like "
                          '{"email": "ada@example.com", "first_name": "Ada"}')
    return data


def parse_set(item: str) -> tuple[str, str]:
    """`first_name=Ada` -> ("first_name", "Ada"): every command's --set (enroll, preview,
    simulate). The value is text, as a web form sends it, without surrounding spaces."""
    key, sep, value = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise InvalidLead(f"--set needs key=value (e.g. --set first_name=Ada), not '{item}'")
    return key, value.strip()


def parse_moment(text: str, zone: ZoneInfo, now: datetime) -> datetime:
    """`now`, `2025-03-04`, `2025-03-04 09:30`, `2025-03-04T09:30+01:00`; naive = in `zone`."""
    if text.strip().lower() == "now":
        return now
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"'{text}' is not a date and time; write e.g. '2025-03-04 09:30' "
                         "(the lead's time zone) or '2025-03-04T09:30+01:00'") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=zone)


def parse_stage_change(text: str, zone: ZoneInfo, now: datetime) -> tuple[datetime, str]:
    """`decision@2025-03-10 09:00` -> (that moment, "decision")."""
    stage, sep, when = text.partition("@")
    if not sep or not stage.strip():
        raise ValueError(f"'{text}' is not STAGE@DATETIME; write e.g. "
                         "'decision@2025-03-10 09:00'")
    return parse_moment(when, zone, now), stage.strip()
