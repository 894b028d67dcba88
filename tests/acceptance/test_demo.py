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
