"""Bad requests to the JSON API get a clear error, not a misleading success or a bare 422:
a body that is not JSON, and a stop in a sequence that does not exist."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from engine.web.state import Runtime
from tests.servers.web_app import auth, make_app, served, web_app, web_settings

ENROLL = {"email": "ada@example.com", "sequence": "demo-request", "first_name": "Ada"}


@pytest.fixture
def client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[httpx.Client]:
    app = make_app(web_settings(tmp_path, monkeypatch))
    with served(web_app(app, Runtime(wake=lambda: None))) as url, \
            httpx.Client(base_url=url) as c:
        yield c


def test_a_body_that_is_not_json_is_a_400_about_the_body(client: httpx.Client) -> None:
    """Malformed JSON: 400, the parser's reason, and no field to blame."""
    r = client.post("/api/leads/enroll", content=b'{"email": "ada@example.com",',
                    headers={**auth(), "Content-Type": "application/json"})
    assert r.status_code == 400
    body = r.json()
    assert body["error"].startswith("the body is not valid JSON: ")
    assert body == {"error": body["error"], "field": None}


def test_stop_in_an_unknown_sequence_is_a_404_naming_the_known_ones(
        client: httpx.Client) -> None:
    """A misspelt sequence is not `stopped: 0`: 404, the name, the known sequences."""
    assert client.post("/api/leads/enroll", json=ENROLL, headers=auth()).status_code == 201
    r = client.post("/api/leads/ada@example.com/stop", json={"sequence": "demo-requets"},
                    headers=auth())
    assert r.status_code == 404
    assert r.json()["field"] == "sequence"
    assert "no sequence named 'demo-requets'" in r.json()["error"]
    assert "demo-request" in r.json()["error"].split("known sequences: ")[1]


def test_stop_in_a_known_sequence_without_enrollments_is_still_fine(
        client: httpx.Client) -> None:
    """A known sequence the lead is not in: 200 and nothing stopped (stop is idempotent)."""
    client.post("/api/leads/enroll", json=ENROLL, headers=auth())
    r = client.post("/api/leads/ada@example.com/stop", json={"sequence": "ripen"},
                    headers=auth())
    assert (r.status_code, r.json()["stopped"]) == (200, 0)
