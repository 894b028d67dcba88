"""Turn pydantic's validation errors on a sequence file into `file:line: plain sentence`."""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel, ValidationError

from engine.authoring.yamlload import Document, Loc
from engine.domain.sequence import Sequence
from engine.errors import Problem

# pydantic's "wrong type" errors: inside a union they are only alternatives that did not fit.
_MISMATCH = {
    "string_type", "dict_type", "model_type", "literal_error", "int_type", "int_parsing",
    "float_type", "float_parsing", "bool_type", "bool_parsing", "list_type", "enum",
    "is_instance_of", "model_attributes_type", "none_required", "date_type", "date_parsing",
    "date_from_datetime_parsing", "frozen_set_type",
}

Located = tuple[Loc, dict[str, Any]]

# What a field looks like when written right, for messages about a wrong shape.
_EXAMPLES = {
    "template": "a template file name, or stage: file lines (e.g. awareness: demo/intro.md.j2)",
    "send_window": "'any', 'inherit', or a mapping like {days: mon-fri, hours: \"08:30-17:30\"}",
    "on_finish": "a mapping like {enroll: ripen}",
    "email": "a mapping like {template: demo/first-touch.md.j2}",
    "task": "a mapping like {kind: call, note: \"Call {{ lead.first_name }}\"}",
    "rules": "a mapping like {reply: handoff, auto_reply: pause}",
    "sample_lead": "a mapping like {first_name: Ada, company: Acme}",
    "when": "a mapping of lead field to value, e.g. {country: DE} or {stage: [awareness, "
            "decision]}",
    "steps": "a list of steps, each line starting with '- '",
    "holidays": "a list of dates like [2025-12-25, 2026-01-01]",
}


def explain(exc: ValidationError, doc: Document) -> list[Problem]:
    """Every error of `exc` as a Problem on the line of `doc` it concerns, each once."""
    groups: dict[Loc, list[Located]] = {}
    plain: list[Located] = []
    for details in exc.errors():
        err: dict[str, Any] = dict(details)
        base, loc = _clean(tuple(err["loc"]), doc.data)
        if base is None:
            plain.append((loc, err))
        else:
            groups.setdefault(base, []).append((loc, err))
    plain = _drop_misspelt_missing(plain)
    found = [_problem(loc, err, doc) for loc, err in plain]
    for base, errs in groups.items():
        found.extend(_union_problems(base, errs, doc))
    return list(dict.fromkeys(found))


def _drop_misspelt_missing(errs: list[Located]) -> list[Located]:
    """`tempalte:` is one mistake: report the unknown key, not also the missing `template`."""
    extra = {(loc[:-1], str(loc[-1])) for loc, e in errs if e["type"] == "extra_forbidden"}

    def misspelt(loc: Loc) -> bool:
        near = [key for parent, key in extra if parent == loc[:-1]]
        return bool(difflib.get_close_matches(str(loc[-1]), near, n=1, cutoff=0.6))

    return [(loc, e) for loc, e in errs if e["type"] != "missing" or not misspelt(loc)]


def _clean(loc: Loc, data: Any) -> tuple[Loc | None, Loc]:
    """Drop pydantic's union-member tags from `loc`; also return the union's own location."""
    kept: list[str | int] = []
    base: Loc | None = None
    node = data
    for i, part in enumerate(loc):
        if _has(node, part):
            node = node[part]
        elif i == len(loc) - 1 and isinstance(node, dict) and isinstance(part, str) \
                and not _is_tag(part):
            pass  # a missing key: keep its name for the message
        else:
            if base is None:
                base = tuple(kept)
            continue
        kept.append(part)
    return base, tuple(kept)


def _has(node: Any, part: str | int) -> bool:
    if isinstance(node, dict):
        return part in node
    return isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)


def _is_tag(part: str) -> bool:
    return any(c in part for c in "[]()") or part in ("str", "int", "float", "bool", "list")


def _union_problems(base: Loc, errs: list[Located], doc: Document) -> Iterator[Problem]:
    """A value that fits no member of a union: report the specific errors, else one hint."""
    specific = [(loc, e) for loc, e in errs if e["type"] not in _MISMATCH]
    if specific:
        yield from (_problem(loc, e, doc) for loc, e in specific)
        return
    field, found = _field_name(base), _show(_value_at(doc.data, base))
    if len(base) > 1 and base[-2] == "when":
        yield doc.problem(base, f"when: {field} must be one value or a list of values; "
                                f"found {found}")
        return
    shape = _EXAMPLES.get(field, "one of the forms described in docs/authoring.md")
    yield doc.problem(base, f"{field} must be {shape}; found {found}")


def _problem(loc: Loc, err: dict[str, Any], doc: Document) -> Problem:
    kind, field = err["type"], _field_name(loc)
    value = _value_at(doc.data, loc)
    if kind == "invalid_key":
        return doc.problem(loc, f"the key {loc[-1]!r} must be a word; did you mean to quote "
                                "it, or is a line missing its key?")
    if kind == "extra_forbidden":
        return doc.problem(loc, _unknown_key(str(loc[-1]), _known_keys(loc[:-1])))
    if kind == "missing":
        return doc.problem(loc[:-1], _missing(loc))
    if kind == "value_error":
        return doc.problem(_blame(loc, err, doc), str(err["msg"]).removeprefix("Value error, "))
    if kind == "too_short" and field == "steps":
        return doc.problem(loc, "'steps' is empty; a sequence needs at least one step")
    if kind in ("model_type", "dict_type") and loc and isinstance(loc[-1], int):
        return doc.problem(loc, f"each step must be a mapping (name, after, email or task); "
                                f"found {_show(value)}")
    if kind in ("model_type", "dict_type", "list_type") and field in _EXAMPLES:
        return doc.problem(loc, f"{field} must be {_EXAMPLES[field]}; found {_show(value)}")
    if kind == "string_type":
        return doc.problem(loc, f"{field} must be text; found {_show(value)}")
    if kind in ("date_parsing", "date_from_datetime_parsing", "date_type"):
        reason = str(err.get("ctx", {}).get("error", "")).replace("_", " ")
        why = f" ({reason})" if reason else ""
        return doc.problem(loc, f"{field}: {_show(value)} is not a date{why}; write dates "
                                "like 2025-12-25")
    if kind in ("int_type", "int_parsing"):
        return doc.problem(loc, f"{field} must be a whole number; found {_show(value)}")
    if kind in ("greater_than_equal", "less_than_equal"):
        limit = err.get("ctx", {}).get("ge", err.get("ctx", {}).get("le"))
        word = "at least" if kind == "greater_than_equal" else "at most"
        return doc.problem(loc, f"{field} must be {word} {limit}; found {_show(value)}")
    if kind in ("literal_error", "enum"):
        allowed = str(err["msg"]).removeprefix("Input should be ")
        return doc.problem(loc, f"{field} must be {allowed}; found {_show(value)}")
    message = str(err["msg"])
    return doc.problem(loc, f"{field}: {message[0].lower()}{message[1:]}; found {_show(value)}")


def _blame(loc: Loc, err: dict[str, Any], doc: Document) -> Loc:
    """Point a whole-sequence error at the step it is about (a duplicate step name)."""
    msg = str(err["msg"])
    if loc == () and "two steps are named" in msg:
        name = msg.split("'")[1]
        steps = doc.data.get("steps") or []
        dups = [i for i, s in enumerate(steps) if isinstance(s, dict) and s.get("name") == name]
        if len(dups) > 1:
            return ("steps", dups[1], "name")
    return loc


def _unknown_key(key: str, known: list[str]) -> str:
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    if close:
        return f"unknown key '{key}'; did you mean '{close[0]}'?"
    if known:
        return f"unknown key '{key}'; the keys allowed here are: {', '.join(known)}"
    return f"unknown key '{key}'"


def _missing(loc: Loc) -> str:
    key, parent = str(loc[-1]), loc[:-1]
    if parent and isinstance(parent[-1], int):
        return f"step {parent[-1] + 1} is missing '{key}'"
    if key == "steps":
        return "missing 'steps': a sequence needs at least one step"
    if key == "name" and not parent:
        return "missing 'name': every sequence needs one, e.g. 'name: demo-request'"
    where = f"'{_field_name(parent)}' " if parent else ""
    return f"{where}is missing '{key}'" if where else f"missing '{key}'"


def _field_name(loc: Loc) -> str:
    """`send_window`, or `step 2` for a list item, for the messages."""
    if not loc:
        return "the sequence"
    last = loc[-1]
    if not isinstance(last, int):
        return str(last)
    if len(loc) > 1 and loc[-2] != "steps":
        return f"{loc[-2]} item {last + 1}"  # e.g. holidays item 2
    return f"step {last + 1}"


def _value_at(data: Any, loc: Loc) -> Any:
    for part in loc:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return None
    return data


def _show(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "nothing"
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _known_keys(loc: Loc) -> list[str]:
    """The keys the model allows at `loc` (for did-you-mean)."""
    model: Any = Sequence
    for part in loc:
        model = _inner_model(_child_type(model, part))
        if model is None:
            return []
    return list(model.model_fields) if _is_model(model) else []


def _child_type(model: Any, part: str | int) -> Any:
    if isinstance(part, int):
        return model
    if not _is_model(model) or part not in model.model_fields:
        return None
    return model.model_fields[part].annotation


def _inner_model(tp: Any) -> Any:
    """The pydantic model inside `X | None`, `list[X]`, `Annotated[X, ...]`."""
    if _is_model(tp):
        return tp
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType, list, typing.Annotated):
        for arg in typing.get_args(tp):
            found = _inner_model(arg)
            if found is not None:
                return found
    return None


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)
