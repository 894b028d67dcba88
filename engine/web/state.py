"""What every route reads from the running application: the App and the daemon's runtime."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from fastapi import Request

from engine.app import App
from engine.web.auth import Sessions


class WatcherLike(Protocol):
    """What health and metrics read from a mailbox watcher (mail.imap.WatcherStatus)."""

    connected: bool
    last_event_at: datetime | None
    handle_failures: int  # messages skipped because handling failed for good
    handle_retries: int  # times a message waited because the database was away
    retrying_since: datetime | None  # set while a message waits to be handled again


def _no_watchers() -> Mapping[str, WatcherLike]:
    return {}


@dataclass
class Runtime:
    """What the daemon shares with the web layer; the defaults fit a server without a daemon."""

    wake: Callable[[], None] | None = None  # the dispatcher's wake-up: speed to lead
    watchers: Callable[[], Mapping[str, WatcherLike]] = _no_watchers
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))


def nurture(request: Request) -> App:
    app: App = request.app.state.nurture
    return app


def runtime(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


def sessions(request: Request) -> Sessions:
    s: Sessions = request.app.state.sessions
    return s
