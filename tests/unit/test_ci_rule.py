"""The rule of tests/conftest.py: no test passes by skipping, in CI or not. A test that asks
for a missing server fails (with how to install it or leave it out), and so does any skip."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

PROBES = {
    # a stray skip in a test (not through require)
    "skip": "import pytest\n\ndef test_probe():\n    pytest.skip('no server')\n",
    # a test that needs a server this machine lacks
    "require": "from tests.conftest import require\n\n"
               "def test_probe():\n    require(False, 'the probe server')\n",
}
SAID = {"skip": "skipped, which hides a failure",
        "require": "the probe server is not available: install it"}


def _run_probe(tmp_path: Path, source: str, ci: str) -> subprocess.CompletedProcess[str]:
    probe = tmp_path / "test_probe.py"
    probe.write_text(source)
    env = {**os.environ, "CI": ci, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "tests.conftest", "-p", "no:cacheprovider",
         "--rootdir", str(tmp_path), str(probe)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.parametrize("kind", list(PROBES))
@pytest.mark.parametrize("ci", ["true", "1", "", "false"])
def test_no_test_passes_by_skipping(tmp_path: Path, kind: str, ci: str) -> None:
    """In CI or not, the probe's run fails and says why."""
    done = _run_probe(tmp_path, PROBES[kind], ci)
    assert done.returncode == 1, done.stdout + done.stderr
    assert SAID[kind] in done.stdout
