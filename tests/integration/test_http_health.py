"""Health and metrics when the database is gone: /healthz says 503 and why, /metrics still
answers with nurture_database_up 0 (a scrape never fails with the database)."""

from __future__ import annotations

import socket
from pathlib import Path

import httpx
import pytest

from engine.app import App
from tests.servers.web_app import served, web_app, web_settings


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # nothing listens there once the socket closes


def test_health_and_metrics_without_a_database(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """No database: /healthz is 503 with database.ok false; /metrics reports it as down."""
    url = f"postgresql://nobody@127.0.0.1:{_closed_port()}/nurture"
    app = App(web_settings(tmp_path, monkeypatch, url=url))
    with served(web_app(app)) as base:
        health = httpx.get(f"{base}/healthz", timeout=30)
        metrics = httpx.get(f"{base}/metrics", timeout=30)
    assert health.status_code == 503
    assert health.json()["database"]["ok"] is False
    assert health.json()["status"] == "down"
    assert metrics.status_code == 200
    assert "nurture_database_up 0.0" in metrics.text
