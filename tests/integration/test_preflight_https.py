"""Start-up checks of the daemon about the public URL: one-click unsubscribe (RFC 8058) needs
https, so an http base_url (the demo, tests on loopback) is said loudly at start-up."""

from __future__ import annotations

from pathlib import Path

import pytest
from structlog.testing import capture_logs

from engine.daemon.runner import preflight
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
