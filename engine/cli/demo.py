"""`nurture demo`: the whole loop on one machine, with real servers on loopback.

A private Dovecot (IMAP + LMTP) holds three mailboxes (the sales mailbox the engine sends from
and watches, a lead's, a rep's); a local relay accepts the engine's SMTP and delivers by LMTP.
The demo enrolls a lead over the HTTP API, waits for the first touch in the lead's inbox,
answers it as the lead, and waits until the lead is in the rep's queue. SQLite, no Docker.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import shutil
import smtplib
import time
import urllib.request
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Any

import typer
import yaml
from rich.console import Console

import engine
from engine.app import App
from engine.errors import ConfigError
from engine.settings import Settings

SALES, LEAD, REP = "sales@example.com", "ada@example.com", "alice@example.com"
REP_PASSWORD_ENV, IMAP_PASSWORD_ENV = "NURTURE_DEMO_REP_PASSWORD", "NURTURE_DEMO_IMAP_PASSWORD"
out = Console()


def register(app: typer.Typer) -> None:
    app.command()(demo)


def demo(
    directory: Path = typer.Option(Path("demo-run"), "--dir", help="Where the demo keeps its "
                                   "database, config and mail (replaced on each run)."),
    port: int = typer.Option(8025, "--port", help="HTTP port for the API and the rep pages "
                             "(0 picks a free one)."),
    stay: bool = typer.Option(True, "--stay/--exit", help="Keep running after the loop so you "
                              "can open the rep pages (Ctrl-C stops), or exit at once."),
) -> None:
    """Run the whole loop on a bundled example: enroll, first touch, reply, rep queue."""
    from engine.devservers.dovecot import Dovecot, dovecot_available, free_port

    try:
        from engine.devservers.relay import Relay
    except ImportError:
        raise ConfigError("the demo's local relay needs aiosmtpd: run `make demo`, or "
                          "pip install -e '.[test]'") from None

    if not dovecot_available():
        raise ConfigError("the demo needs Dovecot: run `make demo` (it installs "
                          "dovecot-imapd and dovecot-lmtpd), or apt-get install them")
    sources = _bundled_example()
    port = port or free_port()  # the unsubscribe links carry the real port
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    # The mail store lives in a fresh temp dir: Dovecot's processes run as `nobody` and must
    # reach it, which a clone under a private home directory would not allow.
    mail = Dovecot()
    passwords = {user: secrets.token_hex(8) for user in (SALES, LEAD, REP)}
    for user, password in passwords.items():
        mail.add_user(user, password)
    mail.start()
    try:
        with Relay(mail.lmtp_port, set(passwords)) as relay:
            settings = _settings(directory, sources, mail, relay.port, passwords, port)
            asyncio.run(_run(App(settings), mail, relay.port, passwords, stay))
    finally:
        mail.cleanup()


def _bundled_example() -> Path:
    """The repository holding sequences/ and templates/ (the clone nurture runs from)."""
    root = Path(engine.__file__).resolve().parent.parent
    if not (root / "sequences" / "demo-request.yaml").is_file():
        raise ConfigError(f"the bundled sequences are not next to the engine in {root}: "
                          "run the demo from a clone of the repository")
    return root


def _settings(directory: Path, sources: Path, mail: Any, relay_port: int,
              passwords: dict[str, str], port: int) -> Settings:
    """Write the demo's nurture.yaml (what an operator would write) and load it with the
    generated passwords handed to the settings, where an operator would export them."""
    config = {
        "database_url": "sqlite:///nurture.db",
        "sequences_dir": str(sources / "sequences"),
        "templates_dir": str(sources / "templates"),
        "default_timezone": "Europe/London",
        "http_port": port,
        "base_url": f"http://127.0.0.1:{port}",
        "postal_address": "Example Inc., 100 Main Street, Springfield, IL 62701, USA",
        "mailboxes": {"sales": {
            "address": SALES, "from_name": "Sam Rivera",
            "signature": "Sam Rivera\nAccount Executive, Example Inc.",
            "smtp": {"host": "127.0.0.1", "port": relay_port, "tls": "none"},
            "imap": {"host": "127.0.0.1", "port": mail.imap_port, "tls": "none",
                     "username": SALES, "password_env": IMAP_PASSWORD_ENV,
                     "sent_folder": "Sent", "idle_renew_seconds": 60, "poll_seconds": 5},
        }},
        "reps": [{"name": "alice", "email": REP, "password_env": REP_PASSWORD_ENV}],
    }
    path = directory / "nurture.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    api_token = secrets.token_urlsafe(16)
    return Settings.load(path, {REP_PASSWORD_ENV: passwords[REP],
                                IMAP_PASSWORD_ENV: passwords[SALES]},
                         secret_key=secrets.token_hex(32), api_token=api_token,
                         log_format="console")


async def _run(app: App, mail: Any, relay_port: int, passwords: dict[str, str],
               stay: bool) -> None:
    from engine.daemon.http import add_http
    from engine.daemon.runner import Daemon
    from engine.daemon.watchers import add_watchers

    app.store.db.upgrade()
    daemon = Daemon(app)
    watchers = add_watchers(daemon)
    port = add_http(daemon, watchers.status)
    running = asyncio.create_task(daemon.run())
    try:
        await _story(app, mail, relay_port, passwords, port)
        if stay:
            out.print("\n[bold]Press Ctrl-C to stop.[/bold]")
            await running
            return
    except BaseException:
        daemon.stop.set()
        raise
    daemon.stop.set()
    await running


async def _story(app: App, mail: Any, relay_port: int, passwords: dict[str, str],
                 port: int) -> None:
    base = f"http://127.0.0.1:{port}"
    out.rule("nurture demo")
    out.print(f"Mail server: Dovecot IMAP 127.0.0.1:{mail.imap_port}, relay SMTP "
              f"127.0.0.1:{relay_port}; rep pages and API on {base}")
    await _wait_until_up(f"{base}/healthz")

    started = time.monotonic()
    body = await asyncio.to_thread(_post, f"{base}/api/leads/enroll", app.settings.api_token, {
        "email": LEAD, "sequence": "demo-request", "first_name": "Ada",
        "company": "Analytical Engines Ltd", "stage": "consideration",
        "fields": {"use_case": "weekly reporting"}, "source": "demo"})
    out.print(f"1. A web form enrolled {LEAD} in demo-request (HTTP {body['status']}).")

    first = await _wait_for_mail(mail, LEAD, passwords[LEAD], 1)
    took = (time.monotonic() - started) * 1000
    out.print(f"2. The first touch reached the lead's inbox {took:.0f} ms later: "
              f"[italic]{first['Subject']}[/italic]")

    reply = _reply(first, "Thanks Sam, this is timely. Could we talk on Thursday at 10?")
    await asyncio.to_thread(_send, relay_port, reply)
    out.print("3. The lead answered from their own mailbox.")

    handoff = await _wait_for_handoff(base, app.settings.api_token)
    out.print(f"4. The watcher saw the reply, stopped the sequence and handed the lead to "
              f"[bold]{handoff.get('rep') or 'a rep'}[/bold] (handoff {handoff['id']}).")
    note = await _wait_for_mail(mail, REP, passwords[REP], 1)
    out.print(f"5. The rep was told by email: [italic]{note['Subject']}[/italic]")
    out.rule()
    out.print(f"Rep queue:  {base}/reps/  (sign in as [bold]alice[/bold], password "
              f"[bold]{passwords[REP]}[/bold])")
    out.print(f"Stats:      {base}/stats")
    out.print(f"CLI:        nurture handoffs --config {app.settings.config_path}")


def _post(url: str, token: str, payload: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(url, data=json.dumps(payload).encode(), method="POST",
                                     headers={"Authorization": f"Bearer {token}",
                                              "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return dict(json.loads(response.read()))


async def _wait_until_up(url: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            await asyncio.to_thread(urllib.request.urlopen, url, None, 2)
            return
        except OSError:
            await asyncio.sleep(0.05)
    raise ConfigError(f"the daemon's HTTP server did not answer at {url}")


def _get(url: str, token: str) -> Any:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


async def _wait_for_mail(mail: Any, user: str, password: str, count: int,
                         timeout: float = 30) -> EmailMessage:
    """The newest message once `user`'s inbox holds `count` messages."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            uids = await asyncio.to_thread(mail.uids, user)
        except Exception as exc:  # noqa: BLE001 - any IMAP failure ends the demo clearly
            raise ConfigError(f"cannot read {user}'s inbox: {exc}") from exc
        if len(uids) >= count:
            with mail.client(user) as imap:
                imap.select_folder("INBOX", readonly=True)
                raw = imap.fetch([uids[-1]], ["BODY.PEEK[]"])[uids[-1]][b"BODY[]"]
            return message_from_bytes(raw, policy=policy.default)  # type: ignore[return-value]
        await asyncio.sleep(0.05)
    raise ConfigError(f"no mail reached {user} within {timeout:.0f} s: see the log above")


async def _wait_for_handoff(base: str, token: str, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = await asyncio.to_thread(_get, f"{base}/api/handoffs", token)
        items = found.get("handoffs", found) if isinstance(found, dict) else found
        if items:
            return dict(items[0])
        await asyncio.sleep(0.1)
    raise ConfigError(f"the reply did not become a handoff within {timeout:.0f} s")


def _reply(original: EmailMessage, text: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = f"Ada <{LEAD}>"
    msg["To"] = str(original["From"])
    msg["Subject"] = "Re: " + str(original["Subject"])
    msg["Date"] = formatdate(localtime=True)
    msg["Message-ID"] = make_msgid(domain="example.com")
    msg["In-Reply-To"] = str(original["Message-ID"])
    msg["References"] = str(original["Message-ID"])
    quoted = "\n".join("> " + line for line in original.get_body(("plain",)).get_content()
                       .splitlines())  # type: ignore[union-attr]
    attribution = f"On {original['Date']}, {original['From']} wrote:"
    msg.set_content(f"{text}\n\nAda\n\n{attribution}\n{quoted}\n")
    return msg


def _send(relay_port: int, msg: EmailMessage) -> None:
    with smtplib.SMTP("127.0.0.1", relay_port, timeout=10) as smtp:
        smtp.send_message(msg, from_addr=LEAD, to_addrs=[SALES])
