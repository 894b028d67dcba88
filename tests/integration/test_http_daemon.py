"""The daemon serves HTTP: an enrollment over the API wakes its dispatcher and the first touch
reaches the SMTP sink; /healthz sees the daemon's worker, /healthz and /metrics its real
mailbox watcher; a busy port is a clear error."""

from __future__ import annotations

import asyncio
import re
import socket
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from engine.daemon.http import add_http, listen
from engine.daemon.runner import Daemon
from engine.daemon.watchers import add_watchers
from engine.errors import ConfigError
from tests.servers.dovecot import DEFAULT_PASSWORD, Dovecot
from tests.servers.smtp_sink import SmtpSink
from tests.servers.web_app import auth, make_app, web_settings


async def _until(check: object, timeout: float = 10.0) -> None:
    """Poll a condition on the loop (not a fixed sleep)."""
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def test_enroll_over_http_sends_the_first_touch_from_the_daemon(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The daemon's own HTTP task enrolls, the dispatcher wakes, the sink gets the email."""
    with SmtpSink() as sink:
        app = make_app(web_settings(tmp_path, monkeypatch, smtp_port=sink.port,
                                    http_port=0))

        async def scenario() -> dict[str, object]:
            daemon = Daemon(app)
            port = add_http(daemon)
            running = asyncio.create_task(daemon.run())
            try:
                async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
                    r = await _retry_connect(http, running)
                    assert r.status_code == 201, r.text
                    await _until(lambda: len(sink.received) == 1)
                    health = (await http.get("/healthz")).json()
            finally:
                daemon.stop.set()
                await running
            return health

        health = asyncio.run(scenario())
    assert sink.received[0].rcpt == ("ada@example.com",)
    assert health["workers"]["alive"] == 1


async def _retry_connect(http: httpx.AsyncClient, running: asyncio.Task[None]) -> httpx.Response:
    """The first request once the server accepts (the socket is bound before it serves)."""
    deadline = time.monotonic() + 10
    while True:
        try:
            return await http.post("/api/leads/enroll", headers=auth(), json={
                "email": "ada@example.com", "sequence": "demo-request", "first_name": "Ada"})
        except httpx.TransportError:
            assert not running.done() and time.monotonic() < deadline
            await asyncio.sleep(0.01)


@pytest.mark.dovecot
def test_health_and_metrics_follow_the_daemons_own_watcher(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dovecot: Dovecot) -> None:
    """Connected to Dovecot: /healthz ok with the watcher connected, /metrics 1. Dovecot
    stops: degraded, disconnected, 0; sending does not depend on it."""
    monkeypatch.setenv("TEST_IMAP_PASSWORD", DEFAULT_PASSWORD)
    settings = web_settings(tmp_path, monkeypatch, http_port=0)
    sales = settings.mailboxes["sales"].model_copy(
        update={"imap": dovecot.imap_config(password_env="TEST_IMAP_PASSWORD", sent_folder="")})
    app = make_app(settings.model_copy(update={"mailboxes": {"sales": sales}}))

    async def scenario() -> list[tuple[dict[str, Any], str]]:
        daemon = Daemon(app)
        port = add_http(daemon, add_watchers(daemon).status)
        running = asyncio.create_task(daemon.run())
        seen: list[tuple[dict[str, Any], str]] = []
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
                for connected in (True, False):
                    health = await _health_once(http, running, connected)
                    seen.append((health, (await http.get("/metrics")).text))
                    if connected:
                        await asyncio.to_thread(dovecot.stop)
        finally:
            daemon.stop.set()
            await running
        return seen

    (up, up_metrics), (down, down_metrics) = asyncio.run(scenario())
    assert up["status"] == "ok" and up["watchers"]["sales"]["connected"] is True
    assert _gauge(up_metrics, "nurture_watcher_connected") == 1.0
    assert down["status"] == "degraded"
    assert down["watchers"]["sales"]["connected"] is False
    assert _gauge(down_metrics, "nurture_watcher_connected") == 0.0


async def _health_once(http: httpx.AsyncClient, running: asyncio.Task[None],
                       connected: bool) -> dict[str, Any]:
    """/healthz once the watcher of `sales` shows `connected` (the server accepts first)."""
    deadline = time.monotonic() + 20
    while True:
        assert not running.done() and time.monotonic() < deadline, "watcher state not shown"
        try:
            health = (await http.get("/healthz")).json()
        except httpx.TransportError:
            health = {}
        watcher = health.get("watchers", {}).get("sales")
        if watcher is not None and watcher["connected"] is connected:
            return health
        await asyncio.sleep(0.05)


def _gauge(metrics: str, name: str) -> float:
    found = re.search(rf'^{name}\{{mailbox="sales"\}} (\S+)$', metrics, re.M)
    assert found, f"{name} for sales missing from /metrics"
    return float(found.group(1))


def test_a_busy_port_is_a_clear_start_up_error() -> None:
    """Another process on the port: ConfigError naming the port and NURTURE_HTTP_PORT."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match=f"127.0.0.1:{port}.*NURTURE_HTTP_PORT"):
            listen("127.0.0.1", port)
