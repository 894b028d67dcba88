"""The web layer for tests: an App on a real database with the example sequences, a
TestClient, and a real uvicorn server on 127.0.0.1 and a free port (for the browser and bench).
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI

from engine.app import App
from engine.settings import MailboxConfig, RepConfig, Settings, SmtpConfig
from engine.web.server import create_app
from engine.web.state import Runtime
from tests.servers.cleanup import close_after_test

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "test-api-token-0123456789"
SECRET = "test-secret-key-for-web"
REPS = {"ada": "ada-password", "bob": "bob-password"}


def web_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, url: str | None = None,
                 smtp_port: int = 25, **overrides: Any) -> Settings:
    """Settings for the example sequences (mailbox `sales`), two reps with passwords."""
    for name, password in REPS.items():
        monkeypatch.setenv(f"TEST_REP_{name.upper()}_PASSWORD", password)
    values: dict[str, Any] = {
        "database_url": url or f"sqlite:///{tmp_path / 'nurture.db'}",
        "sequences_dir": ROOT / "sequences", "templates_dir": ROOT / "templates",
        "base_url": "http://127.0.0.1:8025", "secret_key": SECRET, "api_token": TOKEN,
        "postal_address": "1 Main St, Springfield",
        "mailboxes": {"sales": MailboxConfig(
            address="sales@acme.test", from_name="Sam Rivera",
            per_minute_limit=100_000, daily_limit=1_000_000,
            smtp=SmtpConfig(host="127.0.0.1", port=smtp_port, tls="none", timeout=5.0))},
        "reps": [RepConfig(name=n, email=f"{n}@acme.test",
                           password_env=f"TEST_REP_{n.upper()}_PASSWORD") for n in REPS],
    }
    values.update(overrides)
    return Settings(**values)


def make_app(settings: Settings) -> App:
    app = App(settings)
    close_after_test(app.close)
    app.store.db.upgrade()
    return app


def auth(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class _Server(uvicorn.Server):
    """No signal handlers: the test process owns its signals."""

    def capture_signals(self) -> Any:
        from contextlib import nullcontext

        return nullcontext()


@contextmanager
def served(web: FastAPI) -> Iterator[str]:
    """Serve `web` with uvicorn on 127.0.0.1 and a free port in a thread; yield its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = _Server(uvicorn.Config(web, log_config=None, access_log=False, lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("the test HTTP server did not start")
            thread.join(0.01)  # the server's own start-up event, polled
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def web_app(app: App, runtime: Runtime | None = None) -> FastAPI:
    return create_app(app, runtime)


# --- a lead who replied -----------------------------------------------------------------------

def send_due_now(app: App) -> None:
    """Send passes through the App's real SMTP sender (to the sink the settings name)."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    async def go() -> None:
        try:
            while (await app.send_due().run_pass()).claimed:
                pass
        finally:
            await app.sender.close()

    # In a thread of its own: the caller may have a running loop (Playwright's sync API).
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, go()).result()


def reply_to(app: App, email: str, text: str, uid: int) -> int:
    """The lead answers our last email; the inbound service hands them off. The handoff id."""
    from email.message import EmailMessage

    from engine.mail.imap import RawInbound

    sent = [t for t in app.store.reports.touches() if t.email == email and t.message_id]
    msg = EmailMessage()
    msg["From"] = email
    msg["To"] = "sales@acme.test"
    msg["Subject"] = f"Re: {sent[-1].subject}" if sent else "Hello"
    msg["Message-ID"] = f"<reply-{uid}@example.com>"
    if sent:
        msg["In-Reply-To"] = sent[-1].message_id
        msg["References"] = sent[-1].message_id
    msg.set_content(f"{text}\n\nOn Monday, Sam Rivera wrote:\n> our first email\n> more quote\n")
    done = app.handle_inbound().handle(RawInbound("sales", "INBOX", 1, uid, msg.as_bytes(),
                                                  None))
    assert done.handoff is not None, f"the reply was not handed off: {done}"
    return done.handoff.handoff_id


def replied_lead(app: App, email: str, uid: int = 1, text: str = "Yes, Thursday works.",
                 **values: Any) -> int:
    """Enroll, send the first touch, reply: the handoff id."""
    app.enroller().enroll("demo-request", email, {"first_name": "Ada", **values}, "test")
    send_due_now(app)
    return reply_to(app, email, text, uid)
