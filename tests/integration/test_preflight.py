"""Start-up checks of the daemon: about the public URL (one-click unsubscribe, RFC 8058, needs
https, so an http base_url, the demo's or tests' on loopback, is said loudly at start-up), and
about mailbox passwords the config names but the environment does not hold."""

from __future__ import annotations

from pathlib import Path

import pytest
from structlog.testing import capture_logs

from engine.daemon.runner import preflight
from engine.errors import ConfigError
from engine.settings import ImapConfig, MailboxConfig, SmtpConfig
from tests.servers.web_app import make_app, web_settings


def test_an_http_base_url_is_warned_about_at_start_up(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """base_url http://...: base_url_not_https, saying one-click is off."""
    app = make_app(web_settings(tmp_path, monkeypatch, base_url="http://127.0.0.1:8025"))
    with capture_logs() as logs:
        preflight(app)
    [warning] = [e for e in logs if e["event"] == "base_url_not_https"]
    assert warning["log_level"] == "warning" and "List-Unsubscribe-Post" in warning["hint"]


def test_an_https_base_url_starts_quietly(tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """base_url https://...: no warning."""
    app = make_app(web_settings(tmp_path, monkeypatch, base_url="https://nurture.example.com"))
    with capture_logs() as logs:
        preflight(app)
    assert not [e for e in logs if e["event"] == "base_url_not_https"]


def test_a_mailbox_password_missing_from_the_environment_stops_the_start(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """smtp.password_env and imap.password_env name variables that are not set: the daemon
    refuses to start, naming both (the relay's answer at the first send used to be the only
    sign: 'SMTP AUTH extension is not supported'); once they are set it starts."""
    monkeypatch.delenv("SALES_SMTP_PW", raising=False)
    monkeypatch.delenv("SALES_IMAP_PW", raising=False)
    mailbox = MailboxConfig(
        address="sales@acme.test",
        smtp=SmtpConfig(username="sales", password_env="SALES_SMTP_PW", tls="none"),
        imap=ImapConfig(username="sales", password_env="SALES_IMAP_PW", tls="none"))
    app = make_app(web_settings(tmp_path, monkeypatch, mailboxes={"sales": mailbox}))
    with pytest.raises(ConfigError) as refused:
        preflight(app)
    assert str(refused.value) == (
        "mailboxes.sales.smtp.password_env names SALES_SMTP_PW, which is not set; "
        "mailboxes.sales.imap.password_env names SALES_IMAP_PW, which is not set: export "
        "each (secrets come only from the environment), or remove the password_env line")
    monkeypatch.setenv("SALES_SMTP_PW", "s")
    monkeypatch.setenv("SALES_IMAP_PW", "i")
    preflight(app)
