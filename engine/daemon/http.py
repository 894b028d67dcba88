"""The HTTP server as a daemon task: uvicorn serving engine/web on Settings.http_host/port.

The socket is bound before the daemon starts, so a port in use is a clear start-up error
rather than a task dying later. The daemon owns SIGTERM/SIGINT: uvicorn installs no handlers
and is told to exit when the daemon's stop event is set (requests in flight finish first).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable, Iterator, Mapping

import structlog
import uvicorn
from fastapi import FastAPI

from engine.daemon.runner import Daemon, TaskFactory
from engine.errors import ConfigError
from engine.web.server import create_app
from engine.web.state import Runtime, WatcherLike

log = structlog.get_logger("nurture.http")
GRACE_SECONDS = 5  # for requests in flight at shutdown


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # the daemon handles signals and sets `should_exit` through its stop event


BACKLOG = 2048  # uvicorn's default


def listen(host: str, port: int) -> socket.socket:
    """A bound socket for the HTTP server; ConfigError saying how to fix a busy port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        # Listening from here on: a client that connects between the `http_listening` line
        # and uvicorn's start waits in the backlog instead of being refused.
        sock.listen(BACKLOG)
    except OSError as exc:
        sock.close()
        raise ConfigError(
            f"cannot serve HTTP on {host}:{port}: {exc.strerror or exc}. Stop what uses the "
            "port or choose another with NURTURE_HTTP_PORT (0 picks a free one)"
        ) from None
    return sock


def http_task(web_app: FastAPI, sock: socket.socket) -> TaskFactory:
    async def serve(stop: asyncio.Event) -> None:
        config = uvicorn.Config(web_app, log_config=None, access_log=False, lifespan="off",
                                timeout_graceful_shutdown=GRACE_SECONDS)
        server = _Server(config)
        serving = asyncio.create_task(server.serve(sockets=[sock]), name="uvicorn")
        stopping = asyncio.create_task(stop.wait())
        host, port = sock.getsockname()[:2]
        log.info("http_listening", url=f"http://{host}:{port}")
        try:
            await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            server.should_exit = True
            stopping.cancel()
            await serving
            sock.close()
        if not stop.is_set():
            raise RuntimeError("the HTTP server stopped by itself")
    return serve


def add_http(daemon: Daemon,
             watchers: Callable[[], Mapping[str, WatcherLike]] | None = None) -> int:
    """Serve the API and pages from this daemon (task `http`); the port it listens on."""
    s = daemon.app.settings
    sock = listen(s.http_host, s.http_port)
    runtime = Runtime(wake=daemon.wake)
    if watchers is not None:
        runtime.watchers = watchers
    daemon.add("http", http_task(create_app(daemon.app, runtime), sock))
    return int(sock.getsockname()[1])
