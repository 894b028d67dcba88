"""The small `trial` sequence several integration tests run a real daemon on: a first email
at once, a threaded nudge a day later, from the `sales` mailbox."""

from __future__ import annotations

from pathlib import Path

SEQUENCE = """\
name: trial
mailbox: sales
timezone: UTC
send_window: any
jitter: 0m
steps:
  - {name: hello, after: 0m, email: {template: hello.md.j2}}
  - {name: nudge, after: 1 day, email: {template: hello.md.j2, thread: previous}}
"""
TEMPLATE = ('---\nsubject: "Your trial"\n---\nHow is it going?\n\n'
            "{{ sender.postal_address }} {{ unsubscribe_url }}\n")


def write_trial(root: Path) -> tuple[Path, Path]:
    """root/sequences/trial.yaml and root/templates/hello.md.j2; the two directories."""
    sequences, templates = root / "sequences", root / "templates"
    sequences.mkdir()
    templates.mkdir()
    (sequences / "trial.yaml").write_text(SEQUENCE)
    (templates / "hello.md.j2").write_text(TEMPLATE)
    return sequences, templates
