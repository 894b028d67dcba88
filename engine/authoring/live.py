"""The catalog a running daemon uses: one validated snapshot, replaced whole on reload.

Services, watchers and web pages hold a LiveCatalog (and a LiveRenderer over it) instead of a
Catalog. A reload builds a new Catalog (sequences and their templates, validated, templates
frozen as validated) and swaps one reference, so every reader sees the old snapshot or the
new one, never a mix. When to swap is the daemon's business (engine/daemon/reload.py swaps
between send passes); `swap` tells what changed.
"""

from __future__ import annotations

from collections.abc import Callable, ItemsView, Iterator, KeysView, Mapping, ValuesView
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.authoring.catalog import Catalog
from engine.authoring.templates import RenderedEmail, Renderer
from engine.domain.sequence import Sequence
from engine.errors import Problem


class LiveSequences(Mapping[str, Sequence]):
    """The current snapshot's sequences, looked up afresh on every access (Planning holds
    one of these, so `on_finish` targets follow reloads too)."""

    def __init__(self, live: LiveCatalog) -> None:
        self._live = live

    def _now(self) -> dict[str, Sequence]:
        return self._live.current.sequences

    def __getitem__(self, name: str) -> Sequence:
        return self._now()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._now())

    def __len__(self) -> int:
        return len(self._now())

    # Views of one snapshot: Mapping's defaults would look each key up again, possibly in a
    # snapshot swapped in meanwhile.
    def keys(self) -> KeysView[str]:
        return self._now().keys()

    def values(self) -> ValuesView[Sequence]:
        return self._now().values()

    def items(self) -> ItemsView[str, Sequence]:
        return self._now().items()


@dataclass(frozen=True)
class Change:
    """What a swap changed, by sequence name."""

    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)  # no longer loaded: deleted or broken
    changed: list[str] = field(default_factory=list)
    broken: list[str] = field(default_factory=list)  # files that fail validation now
    problems: list[Problem] = field(default_factory=list)


class LiveCatalog:
    """Quacks like a Catalog (sequences, problems, broken, files, get) over the current one."""

    def __init__(self, load: Callable[[], Catalog]) -> None:
        self._load = load
        self.current = load()
        self.sequences = LiveSequences(self)

    @property
    def problems(self) -> list[Problem]:
        return self.current.problems

    @property
    def broken(self) -> dict[str, list[Problem]]:
        return self.current.broken

    @property
    def files(self) -> dict[str, Path]:
        return self.current.files

    @property
    def templates_dir(self) -> Path:
        return self.current.templates_dir

    def get(self, name: str) -> Sequence:
        return self.current.get(name)

    def load(self) -> Catalog:
        """Read and validate the files again; the result is not in use until `swap`."""
        return self._load()

    def swap(self, new: Catalog) -> Change:
        """Put `new` in use (one reference assignment); what changed."""
        old, self.current = self.current, new
        before, after = old.sequences, new.sequences
        return Change(
            added=sorted(set(after) - set(before)),
            removed=sorted(set(before) - set(after)),
            changed=sorted(n for n in set(before) & set(after) if before[n] != after[n]),
            broken=sorted(new.broken),
            problems=list(new.problems),
        )


class LiveRenderer:
    """Renders with the current snapshot's templates, frozen as they were validated."""

    def __init__(self, live: LiveCatalog) -> None:
        self.live = live

    def _renderer(self) -> Renderer:
        current = self.live.current
        if current.renderer is None:  # nothing was loaded (no sequences directory)
            current.renderer = Renderer(current.templates_dir, frozen=True)
        return current.renderer

    def render_email(self, name: str, context: Mapping[str, Any]) -> RenderedEmail:
        return self._renderer().render_email(name, context)

    def render_text(self, source: str, context: Mapping[str, Any], name: str = "<note>") -> str:
        return self._renderer().render_text(source, context, name)
