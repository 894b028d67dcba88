"""Validating sequence files: every problem of every file at once, as `file:line: message`.

One file's problems never hide another's. Checks that span files (unique names, on_finish
targets) run over the whole set; a file with any problem is left out of the result.
"""

from __future__ import annotations

import difflib
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from engine.authoring.checks import Slot, TemplateChecker
from engine.authoring.explain import explain
from engine.authoring.templates import Renderer
from engine.authoring.timing import check_timing
from engine.authoring.yamlload import Document, load_document
from engine.domain.sequence import NAME_RE, OWNER_WORDS, Sequence, Step, check_timezone
from engine.errors import Problem

SUFFIXES = (".yaml", ".yml")


@dataclass
class Checked:
    """One sequence file after validation."""

    path: Path
    doc: Document | None
    sequence: Sequence | None
    problems: list[Problem] = field(default_factory=list)

    @property
    def name(self) -> str | None:
        data = self.doc.data if self.doc else None
        name = data.get("name") if isinstance(data, dict) else None
        return name if isinstance(name, str) else None

    @property
    def on_finish(self) -> str | None:
        """The sequence `on_finish.enroll` names, as written (None when absent or not text)."""
        data = self.doc.data if self.doc else None
        section = data.get("on_finish") if isinstance(data, dict) else None
        target = section.get("enroll") if isinstance(section, dict) else None
        return target if isinstance(target, str) else None


def validate_paths(
    paths: Iterable[Path | str], templates_dir: Path, mailboxes: Collection[str] | None = None,
    reps: Collection[str] | None = None,
) -> tuple[dict[str, Sequence], list[Problem]]:
    """Validate files (or directories of *.yaml): the good sequences by name, and every problem."""
    checked, problems = check_files(paths, templates_dir, mailboxes, reps=reps)
    good = {c.sequence.name: c.sequence for c in checked if c.sequence and not c.problems}
    return good, all_problems(checked, problems)


def all_problems(checked: list[Checked], problems: list[Problem]) -> list[Problem]:
    """Every problem once (a template shared by two sequences is reported once)."""
    return list(dict.fromkeys(problems + [p for c in checked for p in c.problems]))


def check_files(
    paths: Iterable[Path | str], templates_dir: Path, mailboxes: Collection[str] | None = None,
    default_timezone: str = "UTC", renderer: Renderer | None = None,
    reps: Collection[str] | None = None,
) -> tuple[list[Checked], list[Problem]]:
    """Each file checked on its own, then together; also problems with the paths themselves.
    `renderer` (over templates_dir) is the one to check with, e.g. a frozen one to keep.
    `mailboxes` and `reps` are the configured names (None: not known, so not checked)."""
    files, problems = expand(paths)
    checker = TemplateChecker(renderer or Renderer(templates_dir), default_timezone)
    checked = [_check_one(path, checker, mailboxes, reps) for path in files]
    _check_names(checked)
    _check_on_finish(checked, _sibling_names(files))
    for c in checked:
        c.problems = sorted(dict.fromkeys(c.problems), key=lambda p: (p.path, p.line or 0))
    return checked, problems


def expand(paths: Iterable[Path | str]) -> tuple[list[Path], list[Problem]]:
    """Files as given, directories as their *.yaml files (sorted); missing paths are problems."""
    files: list[Path] = []
    problems: list[Problem] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files += sorted(p for p in path.iterdir() if p.suffix in SUFFIXES and p.is_file())
        elif path.is_file():
            files.append(path)
        else:
            problems.append(Problem(str(path), None, "no such file or directory"))
    return list(dict.fromkeys(files)), problems


def _check_one(path: Path, checker: TemplateChecker, mailboxes: Collection[str] | None,
               reps: Collection[str] | None) -> Checked:
    doc, problems = load_document(path)
    if doc is None:
        return Checked(path, None, None, problems)
    if not isinstance(doc.data, dict):
        what = "empty" if doc.data is None else f"a {type(doc.data).__name__}, not a mapping"
        problems.append(doc.problem((), f"the file is {what}; a sequence file holds keys like "
                                        "name, mailbox and steps"))
        return Checked(path, doc, None, problems)
    # Top-level `x-...` keys hold YAML anchors to reuse (`<<: *common`), as in Compose files.
    data = {k: v for k, v in doc.data.items() if not str(k).startswith("x-")}
    # Names checked against the config read the raw values, so a schema error elsewhere in
    # the file does not hide them (every problem in one run).
    problems += _check_mailbox(data, doc, mailboxes) + _check_owner(data, doc, reps)
    try:
        seq = Sequence.model_validate(data)
    except ValidationError as exc:
        return Checked(path, doc, None, problems + explain(exc, doc) + _check_parts(
            data, doc, checker))
    problems += checker.check(seq, doc)
    problems += check_timing(seq, doc, checker.default_timezone)
    return Checked(path, doc, seq, problems)


def _check_parts(data: dict[str, Any], doc: Document, checker: TemplateChecker) -> list[Problem]:
    """Best effort for a file that failed the schema: the steps that parse on their own
    still get their templates and timing checked, so one run shows every problem."""
    raw = data.get("steps")
    raw = raw if isinstance(raw, list) else []
    slots = []
    for index, item in enumerate(raw):
        try:
            slots.append(Slot(Step.model_validate(item), index, index == len(raw) - 1))
        except ValidationError:
            continue  # already reported by explain()
    if not slots:
        return []
    stand_in = _stand_in(data, [slot.step for slot in slots])
    return (checker.check(stand_in, doc, slots)
            + check_timing(stand_in, doc, checker.default_timezone, slots))


def _stand_in(data: dict[str, Any], steps: list[Step]) -> Sequence:
    """A sequence around the steps that parsed, with the file's name, sample lead and zone
    when those are valid (built without validation: its steps may share a name)."""
    name, zone, sample = data.get("name"), data.get("timezone", "lead"), data.get("sample_lead")
    try:
        zone = zone if zone == "lead" else check_timezone(zone)
    except ValueError:
        zone = "lead"
    return Sequence.model_construct(
        name=name if isinstance(name, str) and NAME_RE.match(name) else "sequence",
        description=str(data.get("description") or ""), timezone=zone,
        sample_lead=sample if isinstance(sample, dict) else {}, steps=steps)


def _check_mailbox(
    data: dict[str, Any], doc: Document, mailboxes: Collection[str] | None
) -> list[Problem]:
    mailbox = data.get("mailbox", "default")
    if mailboxes is None or not isinstance(mailbox, str) or mailbox in mailboxes:
        return []  # a mailbox that is not text is the schema's to report
    known = ", ".join(sorted(mailboxes)) or "none"
    if "mailbox" not in data:
        if difflib.get_close_matches("mailbox", [str(k) for k in data], n=1):
            return []  # a misspelt `mailbox:` key, which the schema reports
        return [doc.problem((), f"no 'mailbox' given, and there is no mailbox named 'default'; "
                                f"add e.g. 'mailbox: {next(iter(sorted(mailboxes)), 'sales')}' "
                                f"(configured: {known})")]
    return [doc.problem(("mailbox",), f"mailbox '{mailbox}' is not configured; "
                                      f"{_did_you_mean(mailbox, mailboxes)}"
                                      f"configured mailboxes: {known} (nurture.yaml, mailboxes:)")]


def _check_owner(
    data: dict[str, Any], doc: Document, reps: Collection[str] | None
) -> list[Problem]:
    """`owner:` is a configured rep, `lead` or `round-robin`: a typo would hand replies to
    a rep who does not exist."""
    owner = data.get("owner", "round-robin")
    if reps is None or not isinstance(owner, str) or owner in (*OWNER_WORDS, *reps):
        return []
    known = ", ".join(sorted(reps)) or "none"
    return [doc.problem(("owner",), f"owner '{owner}' is not a configured rep; "
                                    f"{_did_you_mean(owner, [*reps, *OWNER_WORDS])}"
                                    f"the owner is a rep's name, 'lead' (the lead's owner) or "
                                    f"'round-robin' (configured reps: {known}; nurture.yaml, "
                                    "reps:)")]


def _did_you_mean(name: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    return f"did you mean '{close[0]}'? " if close else ""


def _check_names(checked: list[Checked]) -> None:
    """Sequence names are unique across files: the second file with a name is the broken one."""
    first: dict[str, Path] = {}
    for c in checked:
        if c.name is None or c.doc is None:
            continue
        if c.name in first:
            c.problems.append(c.doc.problem(("name",), f"the sequence name '{c.name}' is "
                                                       f"already used by {first[c.name]}; "
                                                       "names must be unique"))
        else:
            first[c.name] = c.path


def _check_on_finish(checked: list[Checked], elsewhere: set[str]) -> None:
    """`on_finish.enroll` names an existing sequence, and never leads back in a loop.
    Read from the raw file, so a schema error elsewhere in it does not hide this check."""
    names = {c.name for c in checked if c.name} | elsewhere
    targets = {c.name: t for c in checked if c.name and (t := c.on_finish) is not None}
    for c in checked:
        target, loc = c.on_finish, ("on_finish", "enroll")
        if target is None or c.doc is None:
            continue
        if target not in names:
            close = difflib.get_close_matches(target, sorted(names), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            c.problems.append(c.doc.problem(loc, f"on_finish enrolls in '{target}', but no "
                                                 f"sequence has that name{hint}"))
        elif target == c.name:
            c.problems.append(c.doc.problem(loc, "on_finish enrolls the lead in this same "
                                                 "sequence, so it would never end; enroll in "
                                                 "another sequence or remove on_finish"))
        elif c.name and (loop := _loop(c.name, targets)) is not None:
            c.problems.append(c.doc.problem(loc, f"on_finish makes a loop ({loop}): a lead "
                                                 "would never leave it; end one of them"))


def _loop(start: str, targets: dict[str, str]) -> str | None:
    path, name = [start], targets.get(start)
    while name is not None and name not in path:
        path.append(name)
        name = targets.get(name)
    return " -> ".join([*path, start]) if name == start else None


def _sibling_names(files: list[Path]) -> set[str]:
    """Names of the other sequence files next to the given ones (on_finish may point there)."""
    names: set[str] = set()
    for folder in {f.parent for f in files}:
        for other in folder.iterdir():
            if other.suffix in SUFFIXES and other not in files and other.is_file():
                doc, _ = load_document(other)
                data = doc.data if doc else None
                if isinstance(data, dict) and isinstance(data.get("name"), str):
                    names.add(data["name"])
    return names
