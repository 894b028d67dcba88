"""Shared test set-up: a scrubbed environment and the rule for real servers.

No test skips. A real-server test (PostgreSQL, Dovecot, chromium) whose server is missing
FAILS, in CI and on a developer's machine alike: a skip would report a run as green that never
tested what it claims. `scripts/install-deps.sh` installs the servers; to leave such tests
out on purpose, deselect them by marker (`-m "not dovecot and not postgres and not browser"`).
Any other skip (a `skipif`, an `importorskip`) is reported as a failure too.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers.smtp_sink import SmtpSink

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT.parent / "shared" / "corpus"
PG_ADMIN_URL = os.environ.get("NURTURE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
DESELECT = '-m "not dovecot and not postgres and not browser"'


def require(available: bool, what: str) -> None:
    """A server the test needs: missing, the test fails (see the module docstring)."""
    if not available:
        pytest.fail(f"{what} is not available: install it (bash scripts/install-deps.sh), or "
                    f"leave out the tests that need it ({DESELECT})")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A skipped test is a failed one: nothing that should have run passes silently."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped, which hides a failure: {report.longrepr}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A test that asks for it runs twice: on an SQLite file and on a fresh PostgreSQL
    database (pg_url)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'nurture.db'}"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture(autouse=True)
def _close_what_the_test_opened() -> Iterator[None]:
    """Stores, apps and clients the shared helpers opened are closed after each test."""
    from tests.servers.cleanup import close_all

    yield
    close_all()


@pytest.fixture(autouse=True)
def _scrub_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees the developer's NURTURE_* settings."""
    for key in list(os.environ):
        if key.startswith("NURTURE_") and key != "NURTURE_TEST_PG":
            monkeypatch.delenv(key)


def _pg_connect(url: str):  # noqa: ANN202 - psycopg connection
    import psycopg

    return psycopg.connect(url, autocommit=True, connect_timeout=3)


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database for one test, dropped afterwards."""
    try:
        admin = _pg_connect(PG_ADMIN_URL)
    except Exception as exc:  # noqa: BLE001 - any failure means no server
        require(False, f"PostgreSQL at {PG_ADMIN_URL} ({exc})")
        raise
    name = f"nurture_test_{uuid.uuid4().hex[:12]}"
    admin.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    try:
        yield f"{base}/{name}"
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    """An in-process SMTP sink (aiosmtpd) on a free port, stopped after the test."""
    with SmtpSink() as s:
        yield s


@pytest.fixture
def corpus() -> Path:
    require(CORPUS.is_dir(), f"the shared mail corpus at {CORPUS}")
    return CORPUS


from tests.servers.dovecot import dovecot  # noqa: E402, F401 - the real Dovecot fixture
