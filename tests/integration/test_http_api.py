"""The JSON API over HTTP: token auth, enroll (idempotent, wakes the sender), validation
errors as `{"error", "field"}`, stage change, stop, listing; on a real SQLite database."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from engine.app import App
from engine.web.state import Runtime
from tests.servers.web_app import auth, make_app, served, web_app, web_settings

ENROLL = {"email": "Ada@Example.com", "sequence": "demo-request", "first_name": "Ada",
          "company": "Analytical Engines", "stage": "consideration",
          "fields": {"use_case": "weekly reporting"}}


@pytest.fixture
def app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> App:
    return make_app(web_settings(tmp_path, monkeypatch))


@pytest.fixture
def wakes() -> list[int]:
    return []


@pytest.fixture
def client(app: App, wakes: list[int]) -> Iterator[httpx.Client]:
    with served(web_app(app, Runtime(wake=lambda: wakes.append(1)))) as url, \
            httpx.Client(base_url=url) as c:
        yield c


def enroll(client: httpx.Client, **changes: object) -> httpx.Response:
    return client.post("/api/leads/enroll", json={**ENROLL, **changes}, headers=auth())


# --- auth ------------------------------------------------------------------------------------

def test_no_token_is_refused(client: httpx.Client) -> None:
    """A request without a bearer token gets 401, a JSON error and a Bearer challenge."""
    r = client.post("/api/leads/enroll", json=ENROLL)
    assert r.status_code == 401
    assert "Authorization: Bearer" in r.json()["error"]
    assert r.headers["www-authenticate"].startswith("Bearer")


def test_wrong_token_is_refused(client: httpx.Client) -> None:
    """A wrong token gets 401 and enrolls nobody."""
    r = client.post("/api/leads/enroll", json=ENROLL, headers=auth("not-the-token"))
    assert r.status_code == 401
    assert r.json() == {"error": "the API token is not valid"}
    assert client.get("/api/leads", headers=auth()).json() == []


def test_api_without_a_configured_token_is_disabled(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """With no NURTURE_API_TOKEN every token is refused, with a message saying how to fix it."""
    app = make_app(web_settings(tmp_path, monkeypatch, api_token=""))
    with served(web_app(app)) as url:
        r = httpx.get(f"{url}/api/leads", headers=auth("anything"))
    assert r.status_code == 401
    assert "NURTURE_API_TOKEN" in r.json()["error"]


# --- enroll ----------------------------------------------------------------------------------

def test_enroll_creates_the_enrollment_and_wakes_the_sender(client: httpx.Client,
                                                            wakes: list[int]) -> None:
    """A new lead: 201, lower-cased address, first touch due now, the dispatcher woken."""
    r = enroll(client)
    assert r.status_code == 201
    body = r.json()
    assert body["status"] == "enrolled"
    assert body["email"] == "ada@example.com"
    assert body["enrollment_id"] and body["first_touch_at"]
    assert wakes == [1]


def test_enroll_is_idempotent_on_email_and_sequence(client: httpx.Client,
                                                    wakes: list[int]) -> None:
    """The same lead again: 200 `already`, the same lead, still one enrollment, no wake-up."""
    first = enroll(client).json()
    again = enroll(client, email="ada@example.com")
    assert again.status_code == 200
    assert again.json()["status"] == "already"
    assert again.json()["lead_id"] == first["lead_id"]
    assert len(client.get("/api/leads", headers=auth()).json()) == 1
    assert wakes == [1]


def test_enroll_keeps_custom_fields_and_source(client: httpx.Client, app: App) -> None:
    """Custom fields and the caller's source are stored with the lead."""
    enroll(client, source="web-form")
    lead = app.store.leads.get("ada@example.com")
    assert lead is not None
    assert lead.fields["use_case"] == "weekly reporting"
    assert lead.source == "web-form"
    assert lead.company == "Analytical Engines"


@pytest.mark.parametrize(("change", "field", "words"), [
    ({"email": "not-an-address"}, "email", "not a valid email address"),
    ({"email": ""}, "email", "no email address"),
    ({"sequence": "demo-requst"}, "sequence", "did you mean 'demo-request'"),
    ({"timezone": "Mars/Olympus"}, "timezone", "timezone"),
])
def test_enroll_validation_errors_name_the_field(client: httpx.Client, change: dict[str, str],
                                                 field: str, words: str) -> None:
    """Bad input gets 422 with a plain sentence and the field it is about."""
    r = enroll(client, **change)
    assert r.status_code == 422
    assert r.json()["field"] == field
    assert words in r.json()["error"]


@pytest.mark.parametrize(("change", "field"), [
    ({"first_name": "Ada\r\nBcc: eve@example.com"}, "first_name"),
    ({"company": "Engines\u2028Ltd"}, "company"),
    ({"owner": "bob\x00"}, "owner"),
    ({"fields": {"use\ncase": "reporting"}}, "fields"),
])
def test_enroll_refuses_control_characters(client: httpx.Client, change: dict[str, object],
                                           field: str) -> None:
    """CR/LF, NUL or U+2028 in lead data is a 422 on that field, and nobody is enrolled
    (before, the lead was enrolled and its first touch failed)."""
    r = enroll(client, **change)
    assert (r.status_code, r.json()["field"]) == (422, field)
    assert "control characters" in r.json()["error"] or "contains" in r.json()["error"]
    assert client.get("/api/leads", headers=auth()).json() == []


def test_enroll_refuses_an_address_that_needs_smtputf8(client: httpx.Client) -> None:
    """ünï@exämple.com: 422 on `email` saying why, instead of 201 and a failed send."""
    r = enroll(client, email="ünï@exämple.com")
    assert (r.status_code, r.json()["field"]) == (422, "email")
    assert "SMTPUTF8" in r.json()["error"]


def test_enroll_missing_and_unknown_fields(client: httpx.Client) -> None:
    """A missing address and a misspelt key are 422s that say which field."""
    body = {k: v for k, v in ENROLL.items() if k != "email"}
    r = client.post("/api/leads/enroll", json=body, headers=auth())
    assert (r.status_code, r.json()) == (422, {"error": "email is required", "field": "email"})
    r = client.post("/api/leads/enroll", json={**ENROLL, "frist_name": "A"}, headers=auth())
    assert r.status_code == 422
    assert r.json()["field"] == "frist_name"


def test_enroll_a_suppressed_address_is_a_conflict(client: httpx.Client, app: App) -> None:
    """A suppressed address is refused with 409 and the reason, never enrolled."""
    app.store.leads.suppress("ada@example.com", "hard_bounce", "test", app.clock.now())
    r = enroll(client)
    assert r.status_code == 409
    assert r.json()["field"] == "email"
    assert "suppressed (hard_bounce)" in r.json()["error"]


# --- stage, stop, lists ----------------------------------------------------------------------

def test_stage_change_by_patch_and_post(client: httpx.Client, app: App) -> None:
    """PATCH and POST both change the stage; the lead has it at once."""
    enroll(client)
    r = client.patch("/api/leads/ada@example.com", json={"stage": "decision"}, headers=auth())
    assert r.json() == {"email": "ada@example.com", "stage": "decision"}
    r = client.post("/api/leads/ADA@example.com/stage", json={"stage": "awareness"},
                    headers=auth())
    assert r.status_code == 200
    lead = app.store.leads.get("ada@example.com")
    assert lead is not None and lead.stage == "awareness"


def test_stage_change_errors(client: httpx.Client) -> None:
    """An unknown lead is 404; an empty stage or one with a line break is 422 on `stage`."""
    r = client.patch("/api/leads/nobody@example.com", json={"stage": "x"}, headers=auth())
    assert r.status_code == 404
    enroll(client)
    r = client.patch("/api/leads/ada@example.com", json={"stage": " "}, headers=auth())
    assert (r.status_code, r.json()["field"]) == (422, "stage")
    r = client.patch("/api/leads/ada@example.com", json={"stage": "decision\nX"},
                     headers=auth())
    assert (r.status_code, r.json()["field"]) == (422, "stage")


def test_stop_ends_the_live_enrollments(client: httpx.Client) -> None:
    """Stopping a lead stops its live enrollment; a second stop finds nothing to stop."""
    enroll(client)
    r = client.post("/api/leads/ada@example.com/stop", headers=auth())
    assert r.json() == {"email": "ada@example.com", "stopped": 1}
    rows = client.get("/api/leads", params={"sequence": "demo-request"}, headers=auth()).json()
    assert rows[0]["state"] == "stopped"
    again = client.post("/api/leads/ada@example.com/stop", json={"reason": "asked by phone"},
                        headers=auth())
    assert again.json()["stopped"] == 0


def test_lead_details_and_missing_lead(client: httpx.Client) -> None:
    """GET a lead shows fields and enrollments; an unknown address is a 404 JSON error."""
    enroll(client)
    body = client.get("/api/leads/ada@example.com", headers=auth()).json()
    assert body["lead"]["first_name"] == "Ada"
    assert body["enrollments"][0]["sequence"] == "demo-request"
    r = client.get("/api/leads/nobody@example.com", headers=auth())
    assert r.status_code == 404 and "no lead" in r.json()["error"]


def test_openapi_docs_are_served(client: httpx.Client) -> None:
    """/docs serves Swagger UI and the schema lists the enroll endpoint with bearer auth."""
    assert client.get("/docs").status_code == 200
    schema = client.get("/openapi.json").json()
    assert "/api/leads/enroll" in schema["paths"]
    assert "HTTPBearer" in schema["components"]["securitySchemes"]


def test_swagger_ui_loads_its_script_and_style_from_us(client: httpx.Client) -> None:
    """/docs names no other host: its script, style and icon are served by this app (an
    offline or locked-down host shows the docs, not a blank page)."""
    import re

    html = client.get("/docs").text
    urls = re.findall(r"""(?:src|href)=["']([^"']+)""", html)
    assert {u.rsplit(".", 1)[-1] for u in urls} >= {"js", "css"}
    for url in urls:
        assert url.startswith("/") and not url.startswith("//"), f"{url} is not ours"
        r = client.get(url)
        assert r.status_code == 200 and len(r.content) > 100, url
    assert "SwaggerUIBundle" in client.get(next(u for u in urls if u.endswith(".js"))).text


@pytest.mark.postgres
def test_concurrent_identical_enrolls_enroll_once_on_postgres(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pg_url: str) -> None:
    """Eight simultaneous posts of the same lead on PostgreSQL: one 201, seven 200s, one row."""
    from concurrent.futures import ThreadPoolExecutor

    app = make_app(web_settings(tmp_path, monkeypatch, url=pg_url))
    with served(web_app(app)) as url, httpx.Client(base_url=url) as http:
        with ThreadPoolExecutor(8) as pool:
            codes = sorted(pool.map(lambda _: enroll(http).status_code, range(8)))
        rows = http.get("/api/leads", headers=auth()).json()
    assert codes == [200] * 7 + [201]
    assert len(rows) == 1
