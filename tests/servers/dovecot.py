"""The `dovecot` fixture: a real Dovecot (engine/devservers/dovecot.py) for one test.

Import it where you need it: `from tests.servers.dovecot import dovecot  # noqa: F401`
(tests/conftest.py already does).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from engine.devservers.dovecot import (  # noqa: F401 - re-exported for the tests
    DEFAULT_PASSWORD,
    DEFAULT_USER,
    Dovecot,
    dovecot_available,
    free_port,
    make_message,
)


@pytest.fixture
def dovecot() -> Iterator[Dovecot]:
    """A running private Dovecot with one user (DEFAULT_USER / DEFAULT_PASSWORD)."""
    from tests.conftest import require  # late: conftest imports this module

    require(dovecot_available(), "Dovecot (dovecot-imapd, dovecot-lmtpd)")
    server = Dovecot()
    server.add_user(DEFAULT_USER, DEFAULT_PASSWORD)
    try:
        server.start()
        yield server
    finally:
        server.cleanup()
