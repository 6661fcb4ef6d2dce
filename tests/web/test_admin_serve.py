"""The web administration on a running `ipbx serve`: an admin made with `ipbx user
create` signs in, adds extension 1005 in the page, and a phone registers as 1005 at
once; the dashboard's event stream tells the page, whose live panel then lists it."""

from __future__ import annotations

import re

import httpx

from tests.support.sipclient import SipClient
from tests.web.conftest import ADMIN, PASSWORD, AdminSite


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html
    return found[1]


def test_an_extension_added_in_the_page_registers_and_shows_live(admin_site: AdminSite) -> None:
    with httpx.Client(base_url=admin_site.url, timeout=10) as browser:
        sign_in = browser.get("/")
        home = browser.post(
            "/", data={"name": ADMIN, "password": PASSWORD, "csrf": csrf_of(sign_in.text)},
            follow_redirects=True,
        )  # fmt: skip
        assert home.status_code == 200 and "Calls now" in home.text
        page = browser.get("/admin/default/extensions")
        added = browser.post(
            "/admin/default/extensions",
            data={"number": "1005", "name": "Eve", "password": "secret1005",
                  "csrf": csrf_of(page.text)},
            follow_redirects=True,
        )  # fmt: skip
        assert added.status_code == 200 and "Eve" in added.text
        with browser.stream("GET", "/admin/default/events?feed=calls") as events:
            lines = events.iter_lines()
            assert next(lines) == ": connected"
            phone = SipClient(admin_site.server.port, timeout=5)
            try:
                answer = phone.register("1005", "secret1005")
                assert answer is not None and answer.status == 200, answer
            finally:
                phone.close()
            assert next(line for line in lines if line.startswith("event:")) == (
                "event: registration.changed"
            )
        live = browser.get("/admin/default/live")
        assert "<td>1005</td>" in live.text
