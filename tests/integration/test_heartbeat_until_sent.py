"""A stopping daemon keeps beating until its last SMTP transaction is recorded: its leases
stay fresh, so no other worker takes it for dead and retakes a touch still being sent (real
daemon tasks, a slow aiosmtpd relay, SQLite)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from engine.app import App
from engine.daemon.runner import Daemon
from engine.settings import MailboxConfig, Settings, SmtpConfig
from tests.servers import polling
from tests.servers.smtp_sink import Faults, SmtpSink
from tests.servers.trial import write_trial


def test_the_heartbeat_beats_until_the_last_send_is_recorded(tmp_path: Path) -> None:
    sequences, templates = write_trial(tmp_path)
    with SmtpSink(Faults(slow=1.0)) as sink:  # about 2 s an email (RCPT, DATA)
        app = App(Settings(
            database_url=f"sqlite:///{tmp_path / 'n.db'}", sequences_dir=sequences,
            templates_dir=templates, secret_key="test-secret",
            base_url="https://nurture.test", postal_address="1 Main St",
            mailboxes={"sales": MailboxConfig(
                address="sales@acme.test", from_name="Sam",
                smtp=SmtpConfig(host="127.0.0.1", port=sink.port, tls="none", timeout=10))},
        ))
        app.store.db.upgrade()
        beats: list[float] = []

        async def scenario() -> float:
            daemon = Daemon(app)
            daemon.heartbeat.interval = 0.1
            workers = daemon.heartbeat.workers
            beat = workers.heartbeat

            def counted(*args: Any) -> None:  # in the heartbeat's thread
                beat(*args)
                beats.append(time.monotonic())
            workers.heartbeat = counted  # type: ignore[method-assign]
            run = asyncio.create_task(daemon.run())
            await asyncio.to_thread(app.enroller(daemon.wake).enroll, "trial",
                                    "ada@example.com", {"first_name": "Ada"})
            await polling.until(lambda: [t.state for t in app.store.reports.touches()]
                                == ["sending"], 30, every=0.02)
            stopped_at = time.monotonic()
            daemon.stop.set()
            await run
            return stopped_at

        try:
            stopped_at = asyncio.run(scenario())
            [touch] = app.store.reports.touches()
        finally:
            app.store.close()
    assert touch.state == "sent" and len(sink.received) == 1
    assert sum(b > stopped_at for b in beats) >= 3, "no heartbeat while the send finished"
