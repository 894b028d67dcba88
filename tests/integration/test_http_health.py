"""Health and metrics when the database is gone: /healthz says 503 and why, /metrics still
answers with nurture_database_up 0 (a scrape never fails with the database)."""

from __future__ import annotations

import re
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from engine.app import App
from engine.mail.imap import WatcherStatus
from engine.web.state import Runtime
from tests.servers.cleanup import close_after_test
from tests.servers.web_app import make_app, served, web_app, web_settings


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # nothing listens there once the socket closes


def test_health_and_metrics_without_a_database(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """No database: /healthz is 503 with database.ok false; /metrics reports it as down."""
    url = f"postgresql://nobody@127.0.0.1:{_closed_port()}/nurture"
    app = App(web_settings(tmp_path, monkeypatch, url=url))
    close_after_test(app.close)
    with served(web_app(app)) as base:
        health = httpx.get(f"{base}/healthz", timeout=30)
        metrics = httpx.get(f"{base}/metrics", timeout=30)
    assert health.status_code == 503
    assert health.json()["database"]["ok"] is False
    assert health.json()["status"] == "down"
    assert metrics.status_code == 200
    assert "nurture_database_up 0.0" in metrics.text


def test_a_watcher_waiting_on_the_database_shows_on_health_and_metrics(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A reply waiting to be recorded again (and a skipped message) is visible: /healthz is
    degraded with `retrying_since`, /metrics has the wait and the counts per mailbox."""
    app = make_app(web_settings(tmp_path, monkeypatch))
    since = datetime.now(UTC) - timedelta(minutes=2)
    status = WatcherStatus(connected=True, last_event_at=datetime.now(UTC), handle_failures=1,
                           handle_retries=4, retrying_since=since)
    with served(web_app(app, Runtime(watchers=lambda: {"sales": status}))) as base:
        health = httpx.get(f"{base}/healthz", timeout=30)
        metrics = httpx.get(f"{base}/metrics", timeout=30).text
    assert health.status_code == 200 and health.json()["status"] == "degraded"
    sales = health.json()["watchers"]["sales"]
    assert sales["retrying_since"] == since.isoformat() and sales["retrying_seconds"] >= 120
    assert sales["handle_failures"] == 1
    assert 'nurture_watcher_handle_failures_total{mailbox="sales"} 1.0' in metrics
    assert 'nurture_watcher_handle_retries_total{mailbox="sales"} 4.0' in metrics
    waited = re.search(r'nurture_watcher_retrying_seconds\{mailbox="sales"\} ([0-9.]+)', metrics)
    assert waited is not None and float(waited.group(1)) >= 120
