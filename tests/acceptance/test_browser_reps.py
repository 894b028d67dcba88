"""In a real headless Chromium (Debian's, driven by Playwright): a rep signs in, opens the
queue and a lead's thread, claims and closes it; a lead unsubscribes through the link in
the email they got."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from email import message_from_bytes, policy
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from engine.app import App
from tests.servers.smtp_sink import SmtpSink
from tests.servers.web_app import REPS, make_app, replied_lead, served, web_app, web_settings

pytestmark = pytest.mark.browser


@dataclass
class Site:
    app: App
    url: str
    sink: SmtpSink


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Site]:
    with SmtpSink() as sink:
        app = make_app(web_settings(tmp_path, monkeypatch, smtp_port=sink.port))
        with served(web_app(app)) as url:
            yield Site(app, url, sink)


def test_rep_signs_in_opens_the_thread_claims_and_closes(site: Site, page: object) -> None:
    """Sign in, see the waiting lead in the queue, open the thread, claim it, close it won."""
    from playwright.sync_api import Page, expect

    assert isinstance(page, Page)
    hid = replied_lead(site.app, "ada@example.com", text="Yes, Thursday at 10 works for us.",
                       company="Analytical Engines")
    page.goto(f"{site.url}/reps/")
    expect(page).to_have_url(re.compile(r"/reps/login"))
    page.get_by_label("Your name").fill("ada")
    page.get_by_label("Password").fill(REPS["ada"])
    page.get_by_role("button", name="Sign in").click()

    expect(page.get_by_role("heading", name="Leads who replied")).to_be_visible()
    row = page.locator("table.queue tbody tr").first
    expect(row).to_contain_text("ada@example.com")
    expect(row).to_contain_text("waiting")
    row.get_by_role("link").click()

    expect(page).to_have_url(re.compile(rf"/reps/handoffs/{hid}$"))
    thread = page.locator("ol.thread")
    expect(thread.locator("li.ours").first).to_be_visible()  # our first email, then the reply
    expect(thread.locator("li.theirs")).to_contain_text("Yes, Thursday at 10 works for us.")
    expect(page.locator("dl.fields")).to_contain_text("Analytical Engines")

    page.get_by_role("button", name="Claim").click()
    expect(page.get_by_role("status")).to_contain_text("You have claimed this lead")
    page.get_by_label("Outcome").select_option("won")
    page.get_by_label("Note").fill("Demo booked for Thursday")
    page.get_by_role("button", name="Close").click()

    expect(page.get_by_role("status")).to_contain_text("Closed")
    h = site.app.store.handoffs.get(hid)
    assert (h.state, h.rep, h.outcome) == ("closed", "ada", "won")


def test_lead_unsubscribes_through_the_link_in_the_email(site: Site, page: object) -> None:
    """The link in the email opens a confirmation; the button unsubscribes for good."""
    from playwright.sync_api import Page, expect

    assert isinstance(page, Page)
    site.app.enroller().enroll("demo-request", "lee@example.com", {"first_name": "Lee"}, "test")
    from tests.servers.web_app import send_due_now

    send_due_now(site.app)
    [mail] = site.sink.wait_for(1)
    msg = message_from_bytes(mail.raw, policy=policy.default)
    link = re.search(r"<(https?://[^>]+/u/[^>]+)>", str(msg["List-Unsubscribe"]))
    assert link, msg["List-Unsubscribe"]
    path = urlsplit(link.group(1)).path  # the link's path on this test server

    page.goto(f"{site.url}{path}")
    expect(page.get_by_role("heading", name="Unsubscribe?")).to_be_visible()
    expect(page.locator("main")).to_contain_text("lee@example.com")
    assert site.app.store.leads.suppression("lee@example.com") is None  # opening changes nothing

    page.get_by_role("button", name="Unsubscribe").click()
    expect(page.get_by_role("heading", name="You are unsubscribed")).to_be_visible()
    assert site.app.store.leads.suppression("lee@example.com") == "unsubscribe"
    rows = site.app.store.reports.enrollments(sequence="demo-request")
    assert rows[0]["state"] == "stopped"
