"""The classifier over every labelled real-world message in ../shared/corpus (labels.tsv).

Thresholds sit just below what the rules achieve (docs/classification.md has the numbers
and the misses); one rule has no tolerance at all: a person's reply is never automatic.
"""

from __future__ import annotations

import csv
import dataclasses
from collections import Counter
from functools import cache
from pathlib import Path

import pytest

from engine.domain.inbound import Classification, InboundMail, classify
from engine.domain.states import InboundKind
from engine.mail.parse import parse_inbound

BOUNCES = {"bounce", "bounce_hard", "bounce_soft"}
AUTOMATIC = {InboundKind.auto_reply, InboundKind.bounce_hard, InboundKind.bounce_soft}


@cache
def _parsed(path: Path) -> InboundMail:
    return parse_inbound(path.read_bytes())


@cache
def _labelled(corpus: Path) -> list[tuple[dict[str, str], InboundMail, Classification]]:
    with (corpus / "labels.tsv").open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    return [(row, mail, classify(mail)) for row in rows for mail in [_parsed(corpus / row["file"])]]


def _right(label: str, found: Classification) -> bool:
    if label == "bounce":  # the source does not say hard or soft: any bounce is right
        return found.is_bounce
    return found.kind.value == label


def _expected_recipients(row: dict[str, str]) -> list[str]:
    return sorted(a.strip().lower() for a in row["failed_recipient"].split(";") if a.strip())


def test_classification_per_kind(corpus: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Per labelled kind, how many messages the classifier gets right."""
    results = _labelled(corpus)
    total, right, confusion = Counter(), Counter(), Counter()
    for row, _, found in results:
        total[row["kind"]] += 1
        right[row["kind"]] += _right(row["kind"], found)
        confusion[(row["kind"], found.kind.value)] += 1
    with capsys.disabled():
        print(f"\nclassification of {len(results)} corpus messages:")
        for kind in sorted(total):
            wrong = {g: n for (e, g), n in confusion.items() if e == kind and g != kind}
            print(f"  {kind:12} {right[kind]:4}/{total[kind]:<4} other answers: {wrong or '-'}")
    minimum = {"human_reply": 1.0, "auto_reply": 0.91, "unsubscribe": 1.0, "bounce_soft": 0.97,
               "bounce_hard": 0.85, "bounce": 0.9, "other": 0.93}
    for kind, share in minimum.items():
        assert right[kind] >= share * total[kind], f"{kind}: {right[kind]}/{total[kind]}"


def test_no_human_reply_is_classified_as_automatic(corpus: Path) -> None:
    """Never an auto-reply, a bounce or machine-made 'other' for a person's reply."""
    for row, _, found in _labelled(corpus):
        if row["kind"] == "human_reply":
            assert found.kind not in AUTOMATIC, (row["file"], found.reason)
            assert found.written_by_person, (row["file"], found.reason)


def test_bounces_are_detected_as_bounces(corpus: Path) -> None:
    """Every labelled bounce kind: at least 98% are classified as some bounce."""
    results = [(row, found) for row, _, found in _labelled(corpus) if row["kind"] in BOUNCES]
    detected = sum(found.is_bounce for _, found in results)
    assert detected >= 0.98 * len(results), f"{detected}/{len(results)}"


def test_failed_recipients_are_right_where_labelled(corpus: Path) -> None:
    """Where the source names the failed addresses, the bounce names the same ones."""
    labelled = [
        (row, found) for row, _, found in _labelled(corpus)
        if row["failed_recipient"] and found.is_bounce
    ]
    right = sum(
        sorted(found.failed_recipients) == _expected_recipients(row) for row, found in labelled
    )
    assert right >= 0.98 * len(labelled), f"{right}/{len(labelled)}"


def test_non_bounces_are_never_bounces(corpus: Path) -> None:
    """Auto-replies, replies, unsubscribes and other mail are not taken for bounces."""
    for row, _, found in _labelled(corpus):
        if row["kind"] not in BOUNCES:
            assert not found.is_bounce, (row["file"], found.reason)


def _library_only(mail: InboundMail) -> tuple[bool, list[str]]:
    lib = mail.library_bounce
    found = lib is not None and bool(lib.permanent or lib.temporary)
    return found, sorted(set(lib.permanent + lib.temporary)) if lib else []


def _rules_only(mail: InboundMail) -> tuple[bool, list[str]]:
    found = classify(dataclasses.replace(mail, library_bounce=None))
    return found.is_bounce, sorted(found.failed_recipients)


def _combined(mail: InboundMail) -> tuple[bool, list[str]]:
    found = classify(mail)
    return found.is_bounce, sorted(found.failed_recipients)


def test_rules_plus_flufl_bounce_beat_either_alone(
    corpus: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Bounce detection and failed addresses: flufl.bounce, our rules, and both together."""
    scores: dict[str, Counter[str]] = {}
    for name, detect in (("flufl.bounce", _library_only), ("rules", _rules_only),
                         ("rules + flufl", _combined)):
        score: Counter[str] = Counter()
        for row, mail, _ in _labelled(corpus):
            found, addresses = detect(mail)
            if row["kind"] in BOUNCES:
                score["detected"] += found
                if row["failed_recipient"] and found:
                    score["addresses right"] += addresses == _expected_recipients(row)
            else:
                score["false bounces"] += found
        scores[name] = score
    with capsys.disabled():
        print("\nbounce detection (234 bounces, 146 with labelled addresses):")
        for name, score in scores.items():
            print(f"  {name:14} detected {score['detected']:3}  addresses right "
                  f"{score['addresses right']:3}  false bounces {score['false bounces']}")
    combined = scores["rules + flufl"]
    for name in ("flufl.bounce", "rules"):
        assert combined["detected"] >= scores[name]["detected"]
        assert combined["addresses right"] >= scores[name]["addresses right"]
    assert combined["false bounces"] == 0
