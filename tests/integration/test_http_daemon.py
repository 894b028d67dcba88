"""The daemon serves HTTP: an enrollment over the API wakes its dispatcher and the first touch
reaches the SMTP sink; /healthz sees the daemon's worker; a busy port is a clear error."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

import httpx
import pytest

from engine.daemon.http import add_http, listen
from engine.daemon.runner import Daemon
from engine.errors import ConfigError
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


def test_a_busy_port_is_a_clear_start_up_error() -> None:
    """Another process on the port: ConfigError naming the port and NURTURE_HTTP_PORT."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match=f"127.0.0.1:{port}.*NURTURE_HTTP_PORT"):
            listen("127.0.0.1", port)
