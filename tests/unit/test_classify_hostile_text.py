"""Texts built to make a backtracking regex take minutes (found by review: a reply with one
line of 2,000 dashes took 54 s, 8,000 or a line of 20,000 spaces never finished, and the
GIL held meanwhile stopped sending, HTTP and heartbeats). Each is parsed and classified in
a process of its own; a hang shows as the generous deadline passing, not as a slow test."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent
DEADLINE = 60  # seconds; each text takes well under one on the 2-core CI machine
HOSTILE = {
    "dashes": "Hi\n" + "-" * 8000 + "\nthanks",
    "spaces": " " * 20000 + "x",
    "blank lines": "a" + "\n" * 20000 + "b",
    "marker then spaces": "original message" + " " * 20000 + "x",
    "quote marks": ">" * 20000 + "x",
    "inline header": " " * 20000 + "message-id: <x>",
}
SCRIPT = """
import sys
from email.message import EmailMessage
from engine.domain.inbound import classify
from engine.mail.parse import parse_inbound
m = EmailMessage()
m["From"], m["To"], m["Subject"] = "a@b.example", "sales@acme.test", "Re: hi"
m.set_content(sys.stdin.read())
print(classify(parse_inbound(bytes(m))).kind)
"""


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_a_hostile_text_is_classified_without_hanging(name: str) -> None:
    done = subprocess.run([sys.executable, "-c", SCRIPT], input=HOSTILE[name], text=True,
                          capture_output=True, cwd=ROOT, timeout=DEADLINE, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "human_reply"
