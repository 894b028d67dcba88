"""In a real headless Chromium with every other host blocked: /docs (Swagger UI) renders the
API's operations from assets this app serves, as on an offline or locked-down host."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.servers.web_app import make_app, served, web_app, web_settings

pytestmark = pytest.mark.browser


@pytest.fixture
def url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    with served(web_app(make_app(web_settings(tmp_path, monkeypatch)))) as base:
        yield base


def test_swagger_ui_renders_the_operations_without_other_hosts(url: str, page: object) -> None:
    """No request leaves for another host, and the enroll operation is on the page."""
    from playwright.sync_api import Page, Route, expect

    assert isinstance(page, Page)
    ours, elsewhere = urlsplit(url).netloc, []

    def only_ours(route: Route) -> None:
        if urlsplit(route.request.url).netloc == ours:
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort()

    page.route("**/*", only_ours)
    page.goto(f"{url}/docs")
    expect(page.get_by_text("/api/leads/enroll", exact=True)).to_be_visible()
    assert elsewhere == []
