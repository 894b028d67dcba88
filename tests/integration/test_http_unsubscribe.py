"""The unsubscribe link over real HTTP: GET only asks, the RFC 8058 one-click POST and the
confirmation form unsubscribe, a forged or altered token is refused, no cookie is set."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from email import message_from_bytes, policy
from pathlib import Path

import httpx
import pytest

from engine.app import App
from engine.domain import unsubscribe_token
from engine.domain.unsubscribe_token import _sign, make_token
from tests.servers.smtp_sink import SmtpSink
from tests.servers.web_app import SECRET, make_app, send_due_now, served, web_app, web_settings

ONE_CLICK = {"List-Unsubscribe": "One-Click"}


@dataclass
class Site:
    app: App
    http: httpx.Client
    token: str

    def state(self) -> tuple[str | None, str]:
        rows = self.app.store.reports.enrollments(sequence="demo-request")
        return self.app.store.leads.suppression("ada@example.com"), rows[0]["state"]


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Site]:
    app = make_app(web_settings(tmp_path, monkeypatch))
    outcome = app.enroller().enroll("demo-request", "ada@example.com", {}, "test")
    assert outcome.lead_id is not None
    token = make_token(SECRET, outcome.lead_id, "demo-request", "ada@example.com")
    with served(web_app(app)) as url, httpx.Client(base_url=url) as http:
        yield Site(app, http, token)


def test_get_shows_a_confirmation_and_changes_nothing(site: Site) -> None:
    """A mail scanner's GET sees a page with a button; the lead stays subscribed."""
    r = site.http.get(f"/u/{site.token}")
    assert r.status_code == 200
    assert "ada@example.com" in r.text and "<button" in r.text
    assert site.state() == (None, "active")
    assert "set-cookie" not in r.headers


def test_one_click_post_unsubscribes_without_a_page(site: Site) -> None:
    """RFC 8058: the POST with List-Unsubscribe=One-Click needs no cookie and returns 200."""
    r = site.http.post(f"/u/{site.token}", data=ONE_CLICK)
    assert r.status_code == 200
    assert "<html" not in r.text
    assert site.state() == ("unsubscribe", "stopped")


def test_confirmation_form_unsubscribes_and_says_so(site: Site) -> None:
    """The page's own form POST unsubscribes and shows 'You are unsubscribed'."""
    r = site.http.post(f"/u/{site.token}", data={"confirm": "yes"})
    assert r.status_code == 200
    assert "You are unsubscribed" in r.text
    assert site.state() == ("unsubscribe", "stopped")


def test_unsubscribing_twice_is_fine(site: Site) -> None:
    """A second one-click POST is still 200, and the page then says 'already unsubscribed'."""
    site.http.post(f"/u/{site.token}", data=ONE_CLICK)
    assert site.http.post(f"/u/{site.token}", data=ONE_CLICK).status_code == 200
    assert "already unsubscribed" in site.http.get(f"/u/{site.token}").text


def test_an_unsubscribed_address_cannot_be_enrolled_again(site: Site) -> None:
    """After unsubscribing, enrolling the address again is refused as suppressed."""
    site.http.post(f"/u/{site.token}", data=ONE_CLICK)
    from engine.errors import Suppressed

    with pytest.raises(Suppressed):
        site.app.enroller().enroll("ripen", "ada@example.com", {}, "test")


@pytest.mark.parametrize("forge", [
    lambda t: t[:-2] + ("AA" if not t.endswith("AA") else "BB"),  # altered signature
    lambda t: make_token("another-key", 1, "demo-request", "ada@example.com"),  # another key
    lambda t: make_token(SECRET, 1, "ripen", "ada@example.com").split(".")[0] + "."
    + t.split(".")[1],  # swapped
    lambda t: "garbage",
])
def test_forged_or_altered_tokens_are_refused(site: Site, forge: object) -> None:
    """A token that is not ours: 400 with a plain page, for GET and POST; nothing changes."""
    bad = forge(site.token)  # type: ignore[operator]
    for r in (site.http.get(f"/u/{bad}"), site.http.post(f"/u/{bad}", data=ONE_CLICK)):
        assert r.status_code == 400
        assert "not valid" in r.text or "garbled" in r.text
    assert site.state() == (None, "active")


def test_a_valid_token_for_an_unknown_lead_is_refused(site: Site) -> None:
    """A correctly signed token naming no lead is a 400, not a server error."""
    r = site.http.get(f"/u/{make_token(SECRET, 999, 'demo-request', 'ada@example.com')}")
    assert r.status_code == 400


def test_a_link_sent_to_another_address_unsubscribes_nobody(tmp_path: Path, site: Site,
                                                            monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    """After a database reset with the same secret key, lead 1 is someone else: Ada's old
    link (lead 1) names her address, so it is refused (400) for GET and POST, and Grace, who
    now has lead id 1, stays subscribed."""
    other = make_app(web_settings(tmp_path / "reset", monkeypatch))
    outcome = other.enroller().enroll("demo-request", "grace@example.com", {}, "test")
    assert outcome.lead_id == 1  # the id in Ada's link
    with served(web_app(other)) as url, httpx.Client(base_url=url) as http:
        for r in (http.get(f"/u/{site.token}"), http.post(f"/u/{site.token}", data=ONE_CLICK)):
            assert r.status_code == 400 and "address we do not know" in r.text
    assert other.store.leads.suppression("grace@example.com") is None


def test_a_link_of_the_first_format_gets_a_page_saying_how_to_unsubscribe(site: Site) -> None:
    """`lead_id:sequence` tokens (before links named the recipient): 400 with a page that
    says to reply "unsubscribe" instead; nothing changes."""
    payload = b"1:demo-request"
    old = f"{unsubscribe_token._b64(payload)}.{unsubscribe_token._b64(_sign(SECRET, payload))}"
    for r in (site.http.get(f"/u/{old}"), site.http.post(f"/u/{old}", data=ONE_CLICK)):
        assert r.status_code == 400
        assert "from an email we sent before an update" in r.text
        assert "unsubscribe" in r.text
    assert site.state() == (None, "active")


def test_the_link_in_a_sent_email_unsubscribes_its_recipient(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The List-Unsubscribe URL of a real first touch (through the SMTP sink) works: the
    token made at send time names the lead's address."""
    with SmtpSink() as sink:
        app = make_app(web_settings(tmp_path, monkeypatch, smtp_port=sink.port))
        app.enroller().enroll("demo-request", "ada@example.com", {"first_name": "Ada"}, "test")
        send_due_now(app)
        [got] = sink.wait_for(1)
    header = message_from_bytes(got.raw, policy=policy.default)["List-Unsubscribe"]
    token = re.search(r"/u/([^>]+)>", str(header)).group(1)  # type: ignore[union-attr]
    with served(web_app(app)) as url, httpx.Client(base_url=url) as http:
        assert http.post(f"/u/{token}", data=ONE_CLICK).status_code == 200
    assert app.store.leads.suppression("ada@example.com") == "unsubscribe"
