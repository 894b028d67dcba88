"""The rep and marketer pages over real HTTP: sign-in, CSRF, the queue, a lead's thread,
claim / close / back to nurture, another rep's claim (403), stats, health and metrics."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from engine.app import App
from engine.mail.imap import WatcherStatus
from engine.web.state import Runtime
from tests.servers.cleanup import close_after_test
from tests.servers.smtp_sink import SmtpSink
from tests.servers.web_app import (
    REPS,
    auth,
    make_app,
    replied_lead,
    served,
    web_app,
    web_settings,
)


@dataclass
class Site:
    app: App
    url: str
    sink: SmtpSink
    web: FastAPI

    def client(self) -> httpx.Client:
        c = httpx.Client(base_url=self.url)
        close_after_test(c.close)
        return c

    def signed_in(self, rep: str = "ada") -> httpx.Client:
        c = self.client()
        r = c.post("/reps/login", data={"name": rep, "password": REPS[rep],
                                        "csrf": csrf(c.get("/reps/login").text)})
        assert r.status_code == 303, r.text
        return c


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Site]:
    with SmtpSink() as sink:
        app = make_app(web_settings(tmp_path, monkeypatch, smtp_port=sink.port))
        watchers = {"sales": WatcherStatus(connected=True, last_event_at=datetime.now(UTC))}
        web = web_app(app, Runtime(watchers=lambda: watchers))
        with served(web) as url:
            yield Site(app, url, sink, web)


def csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "the page has no CSRF field"
    return found.group(1)


# --- signing in ------------------------------------------------------------------------------

def test_rep_pages_need_a_signed_in_rep(site: Site) -> None:
    """The queue redirects an anonymous visitor to the sign-in page, keeping where they went."""
    r = site.client().get("/reps/?show=mine")
    assert r.status_code == 303
    assert r.headers["location"] == "/reps/login?next=/reps/%3Fshow%3Dmine"


def test_sign_in_sets_a_signed_http_only_lax_cookie(site: Site) -> None:
    """A good password signs in: 303 to the queue, cookie HttpOnly and SameSite=Lax."""
    c = site.client()
    token = csrf(c.get("/reps/login").text)
    r = c.post("/reps/login", data={"name": "ada", "password": REPS["ada"], "csrf": token})
    assert (r.status_code, r.headers["location"]) == (303, "/reps/")
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie
    assert c.get("/reps/").status_code == 200


def test_wrong_password_is_refused(site: Site) -> None:
    """A wrong password (or an unknown rep) shows the form again with 401, signs nobody in."""
    c = site.client()
    for name, password in (("ada", "guess"), ("mallory", "x")):
        r = c.post("/reps/login", data={"name": name, "password": password,
                                        "csrf": csrf(c.get("/reps/login").text)})
        assert r.status_code == 401
        assert "do not match" in r.text
    assert c.get("/reps/").status_code == 303


def test_repeated_wrong_passwords_lock_the_name_for_a_while(site: Site) -> None:
    """After five failures for a name even the right password waits (429); others do not."""
    c = site.client()
    for _ in range(5):
        c.post("/reps/login", data={"name": "ada", "password": "guess",
                                    "csrf": csrf(c.get("/reps/login").text)})
    r = c.post("/reps/login", data={"name": "ada", "password": REPS["ada"],
                                    "csrf": csrf(c.get("/reps/login").text)})
    assert r.status_code == 429 and "try again in" in r.text
    r = c.post("/reps/login", data={"name": "bob", "password": REPS["bob"],
                                    "csrf": csrf(c.get("/reps/login").text)})
    assert r.status_code == 303


def test_failures_for_names_that_are_no_rep_are_not_kept(site: Site) -> None:
    """Made-up names (here long ones) fail like any wrong password but leave nothing in the
    throttle: a stream of them grew its memory without bound. The name shown back is cut."""
    c = site.client()
    for i in range(20):
        r = c.post("/reps/login", data={"name": f"{i}" + "x" * 5000, "password": "guess",
                                        "csrf": csrf(c.get("/reps/login").text)})
        assert r.status_code == 401 and "x" * 201 not in r.text
    c.post("/reps/login", data={"name": "ada", "password": "guess",
                                "csrf": csrf(c.get("/reps/login").text)})
    throttle = site.web.state.login_throttle
    assert list(throttle._failures) == ["ada"]


def test_a_body_over_the_limit_is_refused_before_anything_reads_it(site: Site) -> None:
    """A 1 MB body to the API (no token), the unsubscribe POST and the sign-in form: 413,
    before FastAPI parses it (it read and parsed any size, then answered 401)."""
    c = site.client()
    big = "a" * (1024 * 1024)
    assert c.post("/api/leads/enroll", content=f'{{"email": "{big}"}}',
                  headers={"content-type": "application/json"}).status_code == 413
    assert c.post("/u/anything", data={"x": big}).status_code == 413
    assert c.post("/reps/login", data={"name": big}).status_code == 413
    small = c.post("/api/leads/enroll", json={"email": "ada@example.com"})
    assert small.status_code == 401  # under the limit: on to the token check


def test_sign_in_without_the_csrf_token_is_refused(site: Site) -> None:
    """A sign-in form posted from elsewhere (no CSRF token) gets 403."""
    c = site.client()
    c.get("/reps/login")
    r = c.post("/reps/login", data={"name": "ada", "password": REPS["ada"]})
    assert r.status_code == 403


def test_a_forged_session_cookie_is_no_session(site: Site) -> None:
    """A cookie not signed with the server's key does not sign anyone in."""
    c = site.client()
    c.cookies.set("nurture_session", "eyJyZXAiOiJhZGEifQ.forged.sig")
    assert c.get("/reps/").status_code == 303


def test_sign_out(site: Site) -> None:
    """Signing out ends the session: the queue asks for a sign-in again."""
    c = site.signed_in()
    r = c.post("/reps/logout", data={"csrf": csrf(c.get("/reps/").text)})
    assert r.status_code == 303
    assert c.get("/reps/").status_code == 303


# --- the queue and a lead's thread ------------------------------------------------------------

def test_queue_lists_unclaimed_first_then_newest(site: Site) -> None:
    """Waiting handoffs come before claimed ones; newest first within each."""
    first = replied_lead(site.app, "old@example.com", uid=1)
    second = replied_lead(site.app, "new@example.com", uid=2)
    third = replied_lead(site.app, "claimed@example.com", uid=3)
    site.app.handoffs().claim(third, "bob")
    html = site.signed_in().get("/reps/").text
    order = [int(i) for i in re.findall(r'href="/reps/handoffs/(\d+)"', html)]
    assert order == [second, first, third]


def test_thread_shows_our_touch_their_reply_and_the_lead(site: Site) -> None:
    """The lead's page shows our email, their new text, the full message, and their fields."""
    hid = replied_lead(site.app, "ada@example.com", text="Yes, Thursday works.",
                       company="Analytical Engines", use_case="weekly reporting")
    html = site.signed_in().get(f"/reps/handoffs/{hid}").text
    ours = html.index('class="ours"')
    theirs = html.index('class="theirs"')
    assert ours < theirs  # in order: our touch, then their reply
    assert "Yes, Thursday works." in html
    assert "Full message" in html and "&gt; our first email" in html
    assert "Analytical Engines" in html and "weekly reporting" in html


def test_lead_data_is_escaped(site: Site) -> None:
    """A lead's fields and reply are shown as text, never as markup."""
    hid = replied_lead(site.app, "x@example.com", text="<script>alert(1)</script>",
                       company="<b>Evil</b>")
    html = site.signed_in().get(f"/reps/handoffs/{hid}").text
    assert "<script>alert(1)</script>" not in html and "<b>Evil</b>" not in html
    assert "&lt;b&gt;Evil&lt;/b&gt;" in html


def test_claim_then_close_as_won(site: Site) -> None:
    """Claim makes the lead the rep's; close records the outcome and the note."""
    hid = replied_lead(site.app, "ada@example.com")
    c = site.signed_in("ada")
    token = csrf(c.get(f"/reps/handoffs/{hid}").text)
    r = c.post(f"/reps/handoffs/{hid}/claim", data={"csrf": token})
    assert r.status_code == 303
    h = site.app.store.handoffs.get(hid)
    assert (h.state, h.rep) == ("claimed", "ada")
    r = c.post(f"/reps/handoffs/{hid}/close",
               data={"csrf": token, "outcome": "won", "note": "signed on the call"})
    assert r.status_code == 303
    h = site.app.store.handoffs.get(hid)
    assert (h.state, h.outcome, h.note) == ("closed", "won", "signed on the call")
    assert "Closed" in c.get(r.headers["location"]).text


def test_another_reps_claim_is_forbidden(site: Site) -> None:
    """Bob may not claim, close or resume a lead Ada has claimed: 403, nothing changes."""
    hid = replied_lead(site.app, "ada@example.com")
    site.app.handoffs().claim(hid, "ada")
    bob = site.signed_in("bob")
    page = bob.get(f"/reps/handoffs/{hid}").text
    assert "ada has claimed this lead" in page
    token = csrf(page)
    for action, data in (("claim", {}), ("close", {"outcome": "lost"}),
                         ("resume", {"sequence": "ripen"})):
        r = bob.post(f"/reps/handoffs/{hid}/{action}", data={"csrf": token, **data})
        assert r.status_code == 403, action
    h = site.app.store.handoffs.get(hid)
    assert (h.state, h.rep) == ("claimed", "ada")


def test_actions_need_the_csrf_token(site: Site) -> None:
    """A claim posted without the session's CSRF token is refused with 403."""
    hid = replied_lead(site.app, "ada@example.com")
    r = site.signed_in().post(f"/reps/handoffs/{hid}/claim", data={"csrf": "nope"})
    assert r.status_code == 403
    assert site.app.store.handoffs.get(hid).state == "open"


def test_back_to_nurture_enrolls_the_lead(site: Site) -> None:
    """Putting the lead back closes the handoff (renurtured) and enrolls it in the sequence."""
    hid = replied_lead(site.app, "ada@example.com")
    c = site.signed_in()
    token = csrf(c.get(f"/reps/handoffs/{hid}").text)
    r = c.post(f"/reps/handoffs/{hid}/resume", data={"csrf": token, "sequence": "ripen"})
    assert r.status_code == 303
    assert site.app.store.handoffs.get(hid).outcome == "renurtured"
    rows = site.app.store.reports.enrollments(sequence="ripen")
    assert [(r["email"], r["state"]) for r in rows] == [("ada@example.com", "active")]


def test_closing_a_closed_handoff_is_a_conflict(site: Site) -> None:
    """An action the handoff's state does not allow is a 409 page saying why."""
    hid = replied_lead(site.app, "ada@example.com")
    site.app.handoffs().close(hid, "lost")
    c = site.signed_in()
    token = csrf(c.get(f"/reps/handoffs/{hid}").text)
    r = c.post(f"/reps/handoffs/{hid}/close", data={"csrf": token, "outcome": "won"})
    assert r.status_code == 409
    assert "is closed" in r.text


def test_unknown_handoff_is_404(site: Site) -> None:
    """A handoff id that does not exist is a 404 page."""
    assert site.signed_in().get("/reps/handoffs/999").status_code == 404


# --- stats, health, metrics -------------------------------------------------------------------

def test_stats_page_for_reps_and_api_clients(site: Site) -> None:
    """Stats: a page for signed-in reps, JSON with the API token, a sign-in for others."""
    replied_lead(site.app, "ada@example.com")
    assert site.client().get("/stats").status_code == 303
    assert "demo-request" in site.signed_in().get("/stats").text
    data = site.client().get("/stats", headers={**auth(), "Accept": "application/json"}).json()
    demo = next(s for s in data if s["sequence"] == "demo-request")
    assert demo["totals"]["sent"] == 1 and demo["totals"]["replied"] == 1
    assert demo["totals"]["reply_rate"] == 1.0
    assert demo["steps"][0]["name"] == "first-touch"


def test_healthz_reports_database_workers_and_watchers(site: Site) -> None:
    """/healthz is 200 with the database ok and each watcher's connection."""
    r = site.client().get("/healthz")
    assert r.status_code == 200
    body = r.json()
    assert body["database"] == {"ok": True}
    assert body["watchers"]["sales"]["connected"] is True
    assert body["status"] == "ok"


def test_metrics_expose_the_operators_numbers(site: Site) -> None:
    """/metrics has touches by mailbox, backlog, oldest due age, watchers and open handoffs."""
    replied_lead(site.app, "ada@example.com")
    text = site.client().get("/metrics").text
    assert 'nurture_touches_sent_total{mailbox="sales"} 1.0' in text
    assert 'nurture_touches_failed_total{mailbox="sales"} 0.0' in text
    for name in ("nurture_due_backlog", "nurture_oldest_due_age_seconds",
                 'nurture_watcher_connected{mailbox="sales"} 1.0',
                 'nurture_watcher_last_event_age_seconds{mailbox="sales"}',
                 'nurture_handoffs_open{state="open"} 1.0', "nurture_database_up 1.0"):
        assert name in text


def test_api_lists_handoffs(site: Site) -> None:
    """GET /api/handoffs lists handoffs by state; a state that does not exist is a 422."""
    hid = replied_lead(site.app, "ada@example.com")
    c = site.client()
    [row] = c.get("/api/handoffs", params={"state": "open"}, headers=auth()).json()
    assert (row["id"], row["email"], row["state"]) == (hid, "ada@example.com", "open")
    assert c.get("/api/handoffs", params={"state": "closed"}, headers=auth()).json() == []
    r = c.get("/api/handoffs", params={"state": "done"}, headers=auth())
    assert (r.status_code, r.json()["field"]) == (422, "state")

