"""The catalog: every good sequence of a directory by name, and every problem of the others."""

from __future__ import annotations

import difflib
import os
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from engine.authoring.templates import Renderer
from engine.authoring.validate import all_problems, check_files
from engine.domain.sequence import Sequence
from engine.errors import AuthoringError, Problem, UnknownSequence

Fingerprint = frozenset[tuple[str, int, int]]


@dataclass
class Catalog:
    """Sequences that passed validation; a broken file is left out but reported."""

    sequences: dict[str, Sequence] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    files: dict[str, Path] = field(default_factory=dict)
    broken: dict[str, list[Problem]] = field(default_factory=dict)  # name -> its file's problems
    templates_dir: Path = Path("templates")
    # The templates exactly as validated (frozen), for a daemon to render until it reloads.
    renderer: Renderer | None = None
    # The files as they were just before they were read: a watcher compares with this, so a
    # write made while or after they were read is seen as a change.
    files_seen: Fingerprint = frozenset()

    def get(self, name: str) -> Sequence:
        """The sequence called `name`; a clear error when it is broken or does not exist."""
        if name in self.sequences:
            return self.sequences[name]
        if name in self.broken:
            raise AuthoringError(self.broken[name])
        if not self.sequences and self.problems:
            raise AuthoringError(self.problems)  # e.g. the directory itself is missing
        known = sorted(self.sequences)
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise UnknownSequence(f"no sequence named '{name}'; {hint}"
                              f"known sequences: {', '.join(known) or 'none'}")

    def unavailable(self, waiting: Mapping[str, int]) -> list[tuple[str, int, str]]:
        """Of `waiting` (enrollments still to be worked, per sequence), those whose sequence is
        not loaded: name, how many, and why. They stay due and go out once it loads."""
        return [(name, n, self.why_not_loaded(name)) for name, n in sorted(waiting.items())
                if name not in self.sequences]

    def why_not_loaded(self, name: str) -> str:
        if name in self.broken:
            first, *more = self.broken[name] or [None]
            also = f" (and {len(more)} more: `nurture validate`)" if more else ""
            return f"its file fails validation: {first}{also}" if first else \
                "its file fails validation"
        if self.problems and not self.files and not self.broken:  # no file was even read
            return str(self.problems[0])
        return "no valid sequence file defines it (deleted, renamed, or unreadable)"


def load_catalog(
    sequences_dir: Path, templates_dir: Path, mailboxes: Collection[str] | None = None,
    default_timezone: str = "UTC",
) -> Catalog:
    """Load and validate every sequences_dir/*.yaml; good ones by name, all problems listed."""
    sequences_dir, templates_dir = Path(sequences_dir), Path(templates_dir)
    seen = fingerprint(sequences_dir, templates_dir)
    if not sequences_dir.is_dir():
        problem = Problem(str(sequences_dir), None, "the sequences directory does not exist")
        return Catalog(problems=[problem], templates_dir=templates_dir, files_seen=seen)
    renderer = Renderer(templates_dir, frozen=True)
    checked, problems = check_files([sequences_dir], templates_dir, mailboxes, default_timezone,
                                    renderer)
    catalog = Catalog(problems=all_problems(checked, problems), templates_dir=templates_dir,
                      renderer=renderer, files_seen=seen)
    for c in checked:
        if c.sequence is not None and not c.problems:
            catalog.sequences[c.sequence.name] = c.sequence
            catalog.files[c.sequence.name] = c.path
        elif c.name is not None:
            catalog.broken.setdefault(c.name, c.problems)
    return catalog


def fingerprint(*dirs: Path) -> Fingerprint:
    """Every file under `dirs` as (path, mtime in ns, size): equal means nothing changed."""
    seen: set[tuple[str, int, int]] = set()
    for top in dirs:
        for root, _, names in os.walk(top):
            for name in names:
                path = os.path.join(root, name)
                try:
                    st = os.stat(path)
                except OSError:  # removed while we looked: the next look sees it gone
                    continue
                seen.add((path, st.st_mtime_ns, st.st_size))
    return frozenset(seen)
