"""The web administration in a real browser (Debian's chromium driven by Playwright),
on a phone-sized screen: an admin signs in, adds extension 1005 in the form, and the
page lists it; a bad number is refused next to its field; nothing overflows 375 px; the
dashboard shows the phone that then registers as 1005 without a reload."""

from __future__ import annotations

import shutil

import pytest
from playwright.sync_api import expect, sync_playwright

from ipbx.pbx.provisioning import KINDS
from tests.support.sipclient import SipClient
from tests.web.conftest import ADMIN, PASSWORD, AdminSite

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module", autouse=True)
def _require_chromium() -> None:
    # `make test` installs it (make peers); missing, the set-up is broken: not a skip.
    if shutil.which(CHROMIUM) is None:
        pytest.fail(f"{CHROMIUM} not installed: run make peers")


def test_an_admin_adds_an_extension_in_chromium_at_375_px(admin_site: AdminSite) -> None:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 375, "height": 740})
            page.goto(admin_site.url + "/")
            page.get_by_label("Name").fill(ADMIN)
            page.get_by_label("Password").fill(PASSWORD)
            page.get_by_role("button", name="Sign in").click()
            expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()

            page.get_by_role("link", name="Extensions", exact=True).click()
            form = page.locator("form.card")
            form.get_by_label("Number").fill("10a5")
            form.get_by_label("Name").fill("Eve")
            form.get_by_label("Password").fill("secret1005")
            form.get_by_role("button", name="Add").click()
            expect(page.locator("#number-error")).to_be_visible()

            form.get_by_label("Number").fill("1005")
            form.get_by_label("Password").fill("secret1005")
            form.get_by_role("button", name="Add").click()
            expect(page.get_by_role("link", name="1005")).to_be_visible()
            assert page.evaluate("document.documentElement.scrollWidth") <= 375
            for name in ("calls", "analytics", "queues", "tokens", f"config/{next(iter(KINDS))}"):
                page.goto(f"{admin_site.url}/admin/default/{name}")
                assert page.evaluate("document.documentElement.scrollWidth") <= 375, name

            # The dashboard shows a phone that registers, without a reload.
            page.goto(admin_site.url + "/admin/default/")
            expect(page.get_by_role("heading", name="Registrations (0)")).to_be_visible()
            phone = SipClient(admin_site.server.port, timeout=5)
            try:
                answer = phone.register("1005", "secret1005")
                assert answer is not None and answer.status == 200, answer
                expect(page.get_by_role("heading", name="Registrations (1)")).to_be_visible()
            finally:
                phone.close()
        finally:
            browser.close()
