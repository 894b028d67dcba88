"""The README's first command: `nurture demo` runs the whole loop on a fresh machine."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from engine.devservers.dovecot import dovecot_available
from tests.conftest import require


def test_the_demo_enrolls_sends_sees_the_reply_and_queues_the_lead(tmp_path: Path) -> None:
    """Enroll over HTTP -> first touch in the lead's IMAP inbox -> reply -> handoff -> rep told."""
    require(dovecot_available(), "Dovecot (dovecot-imapd, dovecot-lmtpd)")
    env = {k: v for k, v in os.environ.items() if not k.startswith("NURTURE_")}
    done = subprocess.run(
        [sys.executable, "-m", "engine.cli", "demo", "--dir", str(tmp_path / "demo"),
         "--port", "0", "--exit"],
        capture_output=True, text=True, timeout=120, env={**env, "COLUMNS": "200"}, check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "The first touch reached the lead's inbox" in output
    assert "handed the lead to alice" in output
    assert "The rep was told by email: Ada (Analytical Engines Ltd) replied" in output
    assert (tmp_path / "demo" / "nurture.db").is_file()
    # The closing hint is a command a newcomer copies: it must run and list the handoff.
    hint = next(line for line in output.splitlines() if line.startswith("CLI:"))
    argv = hint.split(":", 1)[1].split()
    assert argv[0] == "nurture", hint
    listed = subprocess.run(
        [sys.executable, "-m", "engine.cli", *argv[1:]], capture_output=True, text=True,
        timeout=60, env={**env, "COLUMNS": "200"}, check=False,
    )
    assert listed.returncode == 0, listed.stdout + listed.stderr
    assert "alice" in listed.stdout, listed.stdout
