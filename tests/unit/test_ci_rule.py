"""The CI rule of tests/conftest.py: in CI a skipped test fails the run; locally it skips."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT


@pytest.mark.parametrize(("ci", "expected"), [("true", 1), ("1", 1), ("", 0), ("false", 0)])
def test_a_skip_fails_the_run_only_in_ci(tmp_path: Path, ci: str, expected: int) -> None:
    probe = tmp_path / "test_probe.py"
    probe.write_text("import pytest\n\ndef test_skips():\n    pytest.skip('no server')\n")
    env = {**os.environ, "CI": ci, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "tests.conftest", "-p", "no:cacheprovider",
         "--rootdir", str(tmp_path), str(probe)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == expected, done.stdout + done.stderr
    if expected:
        assert "skipped in CI" in done.stdout
