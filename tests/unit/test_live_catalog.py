"""The daemon's catalog: one validated snapshot swapped whole, templates frozen as validated,
the change a swap reports, and the file fingerprint that --reload-sequences polls."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from engine.authoring.catalog import fingerprint, load_catalog
from engine.authoring.live import LiveCatalog, LiveRenderer
from engine.domain.context import sample_lead
from engine.errors import AuthoringError
from engine.services.planning import Planning

FOOTER = "{{ sender.postal_address }} <{{ unsubscribe_url }}>\n"
CONTEXT = {"lead": sample_lead({}), "sender": {"postal_address": "1 Main St"},
           "unsubscribe_url": "https://x.test/u/t"}


def seq_yaml(name: str, template: str = "t.md.j2", on_finish: str = "") -> str:
    tail = f"on_finish: {{enroll: {on_finish}}}\n" if on_finish else ""
    return (f"name: {name}\nmailbox: sales\n{tail}steps:\n  - name: hello\n    after: 0m\n"
            f"    email: {{template: {template}}}\n")


def template(subject: str) -> str:
    return f'---\nsubject: "{subject}"\n---\nHi\n' + FOOTER


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path]:
    seqs, tpls = tmp_path / "sequences", tmp_path / "templates"
    seqs.mkdir()
    tpls.mkdir()
    (tpls / "t.md.j2").write_text(template("First version"))
    (seqs / "a.yaml").write_text(seq_yaml("a"))
    (seqs / "b.yaml").write_text(seq_yaml("b"))
    return seqs, tpls


def live(dirs: tuple[Path, Path]) -> LiveCatalog:
    return LiveCatalog(lambda: load_catalog(dirs[0], dirs[1], ["sales"]))


def test_a_template_edited_after_loading_renders_as_validated_until_the_swap(
        dirs: tuple[Path, Path]) -> None:
    """The renderer is frozen at load: an edit on disk shows only after load + swap."""
    catalog = live(dirs)
    renderer = LiveRenderer(catalog)
    (dirs[1] / "t.md.j2").write_text(template("Second version, longer"))
    assert renderer.render_email("t.md.j2", CONTEXT).subject == "First version"
    catalog.swap(catalog.load())
    assert renderer.render_email("t.md.j2", CONTEXT).subject == "Second version, longer"


def test_a_swap_reports_what_changed(dirs: tuple[Path, Path]) -> None:
    """Added, removed, changed and broken sequences are named; problems carry file:line."""
    catalog = live(dirs)
    seqs = dirs[0]
    (seqs / "a.yaml").write_text(seq_yaml("a").replace("after: 0m", "after: 2 days"))
    (seqs / "b.yaml").write_text(seq_yaml("b").replace("after: 0m", "after: soon"))
    (seqs / "c.yaml").write_text(seq_yaml("c"))
    change = catalog.swap(catalog.load())
    assert (change.added, change.removed, change.changed, change.broken) == (
        ["c"], ["b"], ["a"], ["b"])
    assert any(str(p).startswith(f"{seqs / 'b.yaml'}:5: ") for p in change.problems)


def test_a_broken_sequence_is_refused_by_name_after_the_swap(dirs: tuple[Path, Path]) -> None:
    """`get` explains the broken file instead of handing out the last good version."""
    catalog = live(dirs)
    (dirs[0] / "a.yaml").write_text(seq_yaml("a", template="missing.md.j2"))
    catalog.swap(catalog.load())
    assert "a" not in catalog.sequences
    with pytest.raises(AuthoringError, match="missing.md.j2"):
        catalog.get("a")
    assert catalog.get("b").name == "b"


def test_planning_made_before_a_swap_sees_the_new_sequences(dirs: tuple[Path, Path]) -> None:
    """Services build Planning once; its `on_finish` lookups follow the catalog in use."""
    catalog = live(dirs)
    plan = Planning(catalog.sequences, "UTC")
    assert "c" not in plan.sequences
    (dirs[0] / "c.yaml").write_text(seq_yaml("c"))
    catalog.swap(catalog.load())
    assert plan.sequences["c"].name == "c"


def test_iterating_the_sequences_sees_one_snapshot_while_another_is_swapped_in(
        dirs: tuple[Path, Path]) -> None:
    """items() during a swap in another thread never mixes snapshots (no KeyError)."""
    catalog = live(dirs)
    (dirs[0] / "b.yaml").unlink()
    other = catalog.load()
    first = catalog.current
    seen = []
    swapped = threading.Event()
    for name, seq in catalog.sequences.items():
        if not swapped.is_set():
            threading.Thread(target=lambda: (catalog.swap(other), swapped.set())).start()
            swapped.wait(5)
        seen.append((name, seq))
    assert seen == list(first.sequences.items())
    assert list(catalog.sequences) == ["a"]


def test_the_fingerprint_changes_with_an_edit_a_new_file_or_a_removal(
        dirs: tuple[Path, Path]) -> None:
    """Equal when nothing changed; different after each kind of change."""
    before = fingerprint(*dirs)
    assert fingerprint(*dirs) == before
    (dirs[1] / "t.md.j2").write_text(template("Edited " + datetime.now(UTC).isoformat()))
    edited = fingerprint(*dirs)
    assert edited != before
    (dirs[1] / "sub").mkdir()
    (dirs[1] / "sub" / "new.md.j2").write_text("x")
    added = fingerprint(*dirs)
    assert added != edited
    (dirs[0] / "b.yaml").unlink()
    assert fingerprint(*dirs) != added


def test_unavailable_names_waiting_sequences_that_are_not_loaded_and_why(
        tmp_path: Path) -> None:
    """Loaded sequences are not listed; a broken file gives its first problem; a missing one
    says no file defines it; with no sequences directory, that is the reason."""
    (tmp_path / "seq").mkdir()
    (tmp_path / "tpl").mkdir()
    (tmp_path / "tpl" / "t.md.j2").write_text(template("Hi"))
    (tmp_path / "seq" / "good.yaml").write_text(seq_yaml("good"))
    (tmp_path / "seq" / "bad.yaml").write_text(seq_yaml("bad").replace("after: 0m", "after: x"))
    catalog = load_catalog(tmp_path / "seq", tmp_path / "tpl", ["sales"])
    waiting = {"good": 3, "bad": 2, "gone": 1}
    [bad, gone] = catalog.unavailable(waiting)
    assert bad[:2] == ("bad", 2)
    assert bad[2].startswith(f"its file fails validation: {tmp_path / 'seq' / 'bad.yaml'}:")
    assert gone == ("gone", 1, "no valid sequence file defines it (deleted, renamed, or "
                               "unreadable)")
    nothing = load_catalog(tmp_path / "missing", tmp_path / "tpl", ["sales"])
    assert [why for _, _, why in nothing.unavailable({"good": 3})] == [
        f"{tmp_path / 'missing'}: the sequences directory does not exist"]
