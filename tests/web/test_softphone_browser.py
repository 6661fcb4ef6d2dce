"""The softphone page (/phone) in a real browser: Debian's chromium, driven by
Playwright, signs in as extension 1000 over ipbx's wss:// listener (its self-signed
certificate accepted) and talks to baresip registered as 1001. The browser's microphone
plays 440 Hz and baresip plays 1 kHz; each side's tone is checked where the other hears
it: in baresip's recording, and in the page by a WebAudio analyser on the remote stream
and the audio energy getStats() reports. The page is used by its accessible names only:
inputs Extension, Password and Number; buttons Sign in, Call, Answer, Hang up, Hold,
Mute; the status line (role="status") says Registered, Ringing, In call mm:ss."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.support.baresip import BaresipControl, baresip_tone, start_baresip, wait_registered
from tests.support.chromium import (
    dominant_hz,
    inbound_audio,
    launch,
    new_phone_page,
    require_chromium,
)
from tests.support.ports import LOOPBACK, free_port
from tests.support.processes import stop_process
from tests.support.server import Extension, IpbxServer, extension_range, start_configured_ipbx
from tests.support.softphone import analyse, write_tone

BROWSER, BARESIP, OTHER_BROWSER = extension_range(3)
BROWSER_HZ, BARESIP_HZ = 440, 1000
MENU = "500"  # the IVR: 1 rings baresip
TOLERANCE_HZ = 20
IN_CALL = re.compile(r"^In call \d\d:\d\d")


@dataclass
class Site:
    server: IpbxServer
    url: str  # the API listener's, where /phone is
    baresip: BaresipControl
    recordings: Path  # baresip's dump-*-{enc,dec}.wav


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    require_chromium()
    workdir = tmp_path_factory.mktemp("softphone")
    api_port, wss_port = free_port("tcp"), free_port("tcp")
    greeting = write_tone(workdir / "greeting.wav", 600, 1)

    def edit(config: dict[str, Any]) -> None:
        config["sip"]["listen"].append(f"wss://{LOOPBACK}:{wss_port}")
        config["api"] = {"listen": f"{LOOPBACK}:{api_port}"}
        config["ivrs"] = [
            {"name": "main", "greeting": f"file:{greeting}", "options": {"1": "extension:1001"}}
        ]
        config["numbers"] = [{"number": MENU, "destination": "ivr:main"}]

    server = start_configured_ipbx(workdir / "ipbx", edit)
    control_port = free_port("tcp")
    phone = start_baresip(
        workdir,
        registrar_port=server.port,
        user=BARESIP,
        audio_file=baresip_tone(workdir / "1000hz.wav", BARESIP_HZ, 20, "PCMU"),
        control_port=control_port,
        seconds=300,
    )
    control = None
    try:
        wait_registered(server, BARESIP.number)
        control = BaresipControl(control_port)
        yield Site(server, f"http://{LOOPBACK}:{api_port}", control, workdir / "snd")
    finally:
        if control is not None:
            control.close()
        stop_process(phone)
        alive = server.process.poll() is None
        server.stop()
    assert alive, f"ipbx died during the tests:\n{server.log_tail()}"


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    # The fake microphone plays the file once per launch: long enough for every call.
    microphone = write_tone(
        tmp_path_factory.mktemp("microphone") / "440hz.wav", BROWSER_HZ, 120, rate=48000
    )
    with sync_playwright() as playwright:
        launched = launch(playwright, microphone)
        try:
            yield launched
        finally:
            launched.close()


@contextmanager
def signed_in(browser: Browser, site: Site, user: Extension) -> Iterator[Page]:
    """The phone page signed in as `user`, closed (its WebSocket and binding gone) after."""
    page = new_phone_page(browser)
    try:
        page.goto(site.url + "/phone")
        page.get_by_label("Extension").fill(user.number)
        page.get_by_label("Password").fill(user.password)
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("status")).to_have_text("Registered", timeout=10_000)
        yield page
    finally:
        page.context.close()


def assert_hears(page: Page, hz: float) -> None:
    """The page's remote stream carries `hz`, and RTP with audio energy came in."""
    assert dominant_hz(page) == pytest.approx(hz, abs=TOLERANCE_HZ)
    stats = inbound_audio(page)
    assert stats is not None and stats["packets"] > 0 and stats["energy"] > 0, stats


def latest_recording(site: Site, kind: str) -> Path:
    dumps = sorted(site.recordings.glob(f"dump-*-{kind}.wav"), key=lambda p: p.stat().st_mtime)
    assert dumps, f"no baresip recording in {site.recordings}"
    return dumps[-1]


def test_a_browser_calls_baresip_then_an_ivr_by_its_keypad(browser: Browser, site: Site) -> None:
    with signed_in(browser, site, BROWSER) as page:
        status = page.get_by_role("status")

        page.get_by_label("Number").fill(BARESIP.number)
        page.get_by_role("button", name="Call").click()
        expect(status).to_have_text(IN_CALL, timeout=10_000)
        assert site.baresip.wait_event("CALL_ESTABLISHED", 10) is not None
        assert_hears(page, BARESIP_HZ)

        hold = page.get_by_role("button", name="Hold")
        hold.click()
        expect(hold).to_have_attribute("aria-pressed", "true")
        expect(status).to_have_text(re.compile(r"In call \d\d:\d\d \(on hold\)"))
        hold.click()
        expect(hold).to_have_attribute("aria-pressed", "false")
        mute = page.get_by_role("button", name="Mute")
        mute.click()
        expect(mute).to_have_attribute("aria-pressed", "true")
        mute.click()
        expect(mute).to_have_attribute("aria-pressed", "false")
        expect(status).to_have_text(re.compile(r"^In call (?!00:00)\d\d:\d\d$"))  # it ticks

        page.get_by_role("button", name="Hang up").click()
        expect(status).to_have_text("Registered")
        assert site.baresip.wait_event("CALL_CLOSED", 10) is not None
        heard = analyse(latest_recording(site, "dec"))
        assert heard.dominant_hz == pytest.approx(BROWSER_HZ, abs=TOLERANCE_HZ), heard
        history = page.get_by_role("table")
        expect(history.get_by_role("row").nth(1)).to_contain_text(
            f"{BROWSER.number}{BARESIP.number}"
        )
        expect(history.get_by_role("row").nth(1)).to_contain_text("answered")
        assert page.evaluate("document.documentElement.scrollWidth") <= 375  # a phone's screen

        # The IVR's greeting, then 1 on the keypad (RFC 4733 from the browser) rings baresip.
        site.baresip.events.clear()
        page.get_by_label("Number").fill(MENU)
        page.get_by_role("button", name="Call").click()
        expect(status).to_have_text(IN_CALL, timeout=10_000)
        page.get_by_role("group", name="Keypad").get_by_role("button", name="1").click()
        assert site.baresip.wait_event("CALL_ESTABLISHED", 10) is not None, site.server.log_tail()
        page.get_by_role("button", name="Hang up").click()
        expect(status).to_have_text("Registered")


def test_baresip_and_another_browser_call_the_browser_which_transfers(
    browser: Browser, site: Site
) -> None:
    with signed_in(browser, site, BROWSER) as page:
        status = page.get_by_role("status")

        # baresip calls; the page rings with the caller, and answers with its Answer button.
        site.baresip.events.clear()
        site.baresip.command("dial", BROWSER.number)
        expect(status).to_have_text("Ringing", timeout=10_000)
        expect(page.get_by_text(f"Call from {BARESIP.number}")).to_be_visible()
        page.get_by_role("button", name="Answer").click()
        expect(status).to_have_text(IN_CALL, timeout=10_000)
        assert site.baresip.wait_event("CALL_ESTABLISHED", 10) is not None
        assert_hears(page, BARESIP_HZ)
        page.get_by_role("button", name="Hang up").click()
        expect(status).to_have_text("Registered")
        assert site.baresip.wait_event("CALL_CLOSED", 10) is not None
        heard = analyse(latest_recording(site, "dec"))
        assert heard.dominant_hz == pytest.approx(BROWSER_HZ, abs=TOLERANCE_HZ), heard

        # Browser to browser: 1002 calls 1000, which sees its name and answers; each hears
        # the other's microphone.
        with signed_in(browser, site, OTHER_BROWSER) as other:
            other.get_by_label("Number").fill(BROWSER.number)
            other.get_by_role("button", name="Call").click()
            expect(status).to_have_text("Ringing", timeout=10_000)
            expect(other.get_by_role("status")).to_have_text("Ringing")
            expect(
                page.get_by_text(f"Call from {OTHER_BROWSER.name} ({OTHER_BROWSER.number})")
            ).to_be_visible()
            page.get_by_role("button", name="Answer").click()
            expect(status).to_have_text(IN_CALL, timeout=10_000)
            expect(other.get_by_role("status")).to_have_text(IN_CALL)
            assert_hears(page, BROWSER_HZ)
            assert_hears(other, BROWSER_HZ)

            # 1000 transfers 1002 to baresip (REFER): 1000 is free again, 1002 talks to baresip.
            site.baresip.events.clear()
            page.get_by_label("Transfer to").fill(BARESIP.number)
            page.get_by_role("button", name="Transfer").click()
            expect(status).to_have_text("Registered", timeout=10_000)
            assert site.baresip.wait_event("CALL_ESTABLISHED", 10) is not None
            assert_hears(other, BARESIP_HZ)
            other.get_by_role("button", name="Hang up").click()
            expect(other.get_by_role("status")).to_have_text("Registered")
