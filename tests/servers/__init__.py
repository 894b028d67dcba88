"""Real servers started by the test suite (Dovecot)."""
