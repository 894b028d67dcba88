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


# --- list filters: a value that cannot match is an error, not an empty list -----------------

def test_listing_leads_in_an_unknown_state_is_a_422_naming_the_states(
        client: httpx.Client) -> None:
    """`?state=bogus` is refused with the allowed states, not answered with `[]`."""
    client.post("/api/leads/enroll", json=ENROLL, headers=auth())
    r = client.get("/api/leads", params={"state": "bogus"}, headers=auth())
    assert r.status_code == 422
    assert r.json()["field"] == "state"
    for state in ("active", "paused", "finished", "stopped", "handed_off"):
        assert f"'{state}'" in r.json()["error"]


def test_listing_leads_in_a_known_state_still_filters(client: httpx.Client) -> None:
    """A valid state filters: the new enrollment is active, not finished."""
    client.post("/api/leads/enroll", json=ENROLL, headers=auth())
    active = client.get("/api/leads", params={"state": "active"}, headers=auth())
    finished = client.get("/api/leads", params={"state": "finished"}, headers=auth())
    assert [row["email"] for row in active.json()] == ["ada@example.com"]
    assert finished.json() == []


def test_listing_leads_of_an_unknown_sequence_is_a_422_naming_the_known_ones(
        client: httpx.Client) -> None:
    """A misspelt `?sequence=` is refused with the known sequences, not answered with `[]`."""
    client.post("/api/leads/enroll", json=ENROLL, headers=auth())
    r = client.get("/api/leads", params={"sequence": "demo-requets"}, headers=auth())
    assert r.status_code == 422
    assert r.json()["field"] == "sequence"
    assert "no sequence named 'demo-requets'" in r.json()["error"]
    assert "demo-request" in r.json()["error"].split("known sequences: ")[1]


def test_listing_leads_of_a_known_sequence_without_enrollments_is_an_empty_list(
        client: httpx.Client) -> None:
    """A loaded sequence nobody is in yet: 200 and `[]`."""
    r = client.get("/api/leads", params={"sequence": "ripen"}, headers=auth())
    assert (r.status_code, r.json()) == (200, [])


def test_listing_handoffs_of_an_unknown_rep_is_a_422_naming_the_reps(
        client: httpx.Client) -> None:
    """A misspelt `?rep=` is refused with the configured reps, not answered with `[]`."""
    r = client.get("/api/handoffs", params={"rep": "adda"}, headers=auth())
    assert r.status_code == 422
    assert r.json()["field"] == "rep"
    assert "no rep named 'adda'" in r.json()["error"]
    assert "ada, bob" in r.json()["error"]


def test_listing_handoffs_in_an_unknown_state_is_a_422_naming_the_states(
        client: httpx.Client) -> None:
    """`?state=bogus` on handoffs: 422 with open, claimed and closed."""
    r = client.get("/api/handoffs", params={"state": "bogus"}, headers=auth())
    assert r.status_code == 422
    assert r.json()["field"] == "state"
    assert all(f"'{s}'" in r.json()["error"] for s in ("open", "claimed", "closed"))
