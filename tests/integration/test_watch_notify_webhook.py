"""The handoff webhook against a real HTTP server on loopback (services/notify.post_json)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from engine.services.notify import post_json


class Hook(BaseHTTPRequestHandler):
    received: list[tuple[str, dict[str, Any], str]] = []
    status = 200

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append((self.path, json.loads(body), self.headers["Content-Type"]))
        self.send_response(self.status)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def hook() -> Iterator[tuple[str, type[Hook]]]:
    handler = type("H", (Hook,), {"received": [], "status": 200})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hooks/T0/B1/secret", handler
    server.shutdown()
    server.server_close()


def test_the_payload_arrives_as_json(hook: tuple[str, type[Hook]]) -> None:
    """One POST to the configured path, JSON with the text chat tools show."""
    url, handler = hook
    post_json(url, {"text": "Ada replied", "handoff_id": 7})
    assert handler.received == [("/hooks/T0/B1/secret", {"text": "Ada replied", "handoff_id": 7},
                                 "application/json")]


def test_an_error_status_raises_for_the_notifier_to_log(hook: tuple[str, type[Hook]]) -> None:
    """A 500 from the chat tool is an exception (the Notifier records it, never re-raises)."""
    url, handler = hook
    handler.status = 500
    with pytest.raises(OSError):
        post_json(url, {"text": "x"})
