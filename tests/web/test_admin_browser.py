"""The web administration in a real browser (Debian's chromium driven by Playwright),
on a phone-sized screen, as an office manager uses it: an admin signs in, adds extension
1005 in the form (a bad number is refused next to its field), and nothing overflows
375 px. The dashboard, left open, shows without a reload the baresip that registers as
1005 and its call to 1000 (another baresip, answering with a tone) while it lasts; the
call history then shows the call with the MOS of each leg, and its recording plays in
the page."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect, sync_playwright

from ipbx.pbx.provisioning import KINDS
from tests.support.baresip import BaresipControl, start_baresip, wait_registered
from tests.support.chromium import CHROMIUM, require_chromium
from tests.support.ports import LOOPBACK, free_port
from tests.support.processes import stop_process
from tests.support.records import call_records
from tests.support.server import Extension
from tests.support.softphone import write_tone
from tests.web.conftest import ADMIN, PASSWORD, AdminSite

NEW = Extension("1005", "Eve", "secret1005")
CALLEE = Extension("1000", "Alice", "secret1000")
TALK_SECONDS = 4  # 1000 answers with a tone this long, then hangs up

# Plays a recording's <audio> element muted (a page may start muted playback without a
# click) and resolves once its playback has advanced: its duration and position then.
PLAY = """async (audio) => {
  audio.muted = true;
  const advanced = new Promise((resolve, reject) => {
    audio.addEventListener("timeupdate", () => audio.currentTime > 0 && resolve());
    audio.addEventListener("error", () => reject(new Error("media error " + audio.error.code)));
  });
  await audio.play();
  await advanced;
  return [audio.duration, audio.currentTime];
}"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    require_chromium()
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield launched
        finally:
            launched.close()


def test_an_admin_adds_1005_whose_call_shows_live_then_in_the_history_with_its_recording(
    admin_site: AdminSite, browser: Browser, tmp_path: Path
) -> None:
    page = browser.new_page(viewport={"width": 375, "height": 740})
    page.goto(admin_site.url + "/")
    page.get_by_label("Name").fill(ADMIN)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()

    page.get_by_role("link", name="Extensions", exact=True).click()
    form = page.locator("form.card")
    form.get_by_label("Number").fill("10a5")
    form.get_by_label("Name").fill(NEW.name)
    form.get_by_label("Password").fill(NEW.password)
    form.get_by_role("button", name="Add").click()
    expect(page.locator("#number-error")).to_be_visible()

    form.get_by_label("Number").fill(NEW.number)
    form.get_by_label("Password").fill(NEW.password)
    form.get_by_role("button", name="Add").click()
    expect(page.get_by_role("link", name=NEW.number)).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    for name in ("calls", "analytics", "queues", "tokens", f"config/{next(iter(KINDS))}"):
        page.goto(f"{admin_site.url}/admin/default/{name}")
        assert page.evaluate("document.documentElement.scrollWidth") <= 375, name

    # From here the dashboard stays open: what follows shows without a reload.
    page.goto(admin_site.url + "/admin/default/")
    expect(page.get_by_role("heading", name="Registrations (0)")).to_be_visible()
    server = admin_site.server
    control_port = free_port("tcp")
    caller = start_baresip(
        tmp_path / "caller", registrar_port=server.port, user=NEW, seconds=40,
        audio_file=write_tone(tmp_path / "1000hz.wav", 1000, 3 * TALK_SECONDS),
        control_port=control_port,
    )  # fmt: skip
    callee = None
    control = None
    try:
        wait_registered(server, NEW.number)
        expect(page.get_by_role("heading", name="Registrations (1)")).to_be_visible()
        callee = start_baresip(
            tmp_path / "callee", registrar_port=server.port, user=CALLEE, seconds=40,
            audio_file=write_tone(tmp_path / "700hz.wav", 700, TALK_SECONDS),
        )  # fmt: skip
        expect(page.get_by_role("heading", name="Registrations (2)")).to_be_visible()

        control = BaresipControl(control_port)
        control.command("dial", f"sip:{CALLEE.number}@{LOOPBACK}:{server.port}")
        assert control.wait_event("CALL_ESTABLISHED", 10), control.events
        expect(page.get_by_role("heading", name="Calls now (1)")).to_be_visible()
        live = page.get_by_role("region", name="Calls now (1)").locator("tbody tr")
        expect(live.locator("td").nth(0)).to_have_text(NEW.number)
        expect(live.locator("td").nth(1)).to_have_text(CALLEE.number)
        expect(live.locator(".duration")).to_have_text(re.compile(r"0:0[1-9]"))  # ticking
        assert control.wait_event("CALL_CLOSED", 2 * TALK_SECONDS), control.events
        expect(page.get_by_role("heading", name="Calls now (0)")).to_be_visible()
    finally:
        if control is not None:
            control.close()
        for process in (caller, callee):
            if process is not None:
                stop_process(process)

    (record,) = call_records(server)
    assert record.recording is not None, record
    assert [leg.role for leg in record.legs] == ["caller", "callee"], record
    page.get_by_role("link", name="Calls", exact=True).click()
    expect(page.get_by_text("1 call(s).")).to_be_visible()
    legs = page.get_by_role("row").filter(has_text=NEW.number).locator("td").nth(5)
    for leg in record.legs:
        assert leg.mos is not None, record
        expect(legs).to_contain_text(f"{leg.role} PCMU: loss ")
        expect(legs).to_contain_text(f"MOS {leg.mos:.2f}")

    audio = page.locator("audio")
    source = audio.get_attribute("src")
    assert source == f"/admin/default/calls/{record.call_id}/recording"
    answer = page.request.get(admin_site.url + source)
    assert answer.ok and answer.headers["content-type"] == "audio/wav"
    duration, position = audio.evaluate(PLAY)
    assert duration == pytest.approx(TALK_SECONDS, abs=1.5) and position > 0
