"""The web administration on a running `ipbx serve`: an admin made with `ipbx user
create` signs in, adds extension 1005 in the page, and a phone registers as 1005 at
once; the dashboard's event stream tells the page, whose live panel then lists it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import httpx

from tests.support.ports import LOOPBACK, free_port
from tests.support.server import run_ipbx, write_config
from tests.support.sipclient import SipClient

PASSWORD = "correct horse battery"


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html
    return found[1]


def test_an_extension_added_in_the_page_registers_and_shows_live(tmp_path: Path) -> None:
    api_port = free_port("tcp")
    config, port = write_config(tmp_path, api_port)
    made = subprocess.run(
        [sys.executable, "-m", "ipbx.cli", "user", "create", "office", "--config", str(config),
         "--role", "admin"],
        input=PASSWORD + "\n", capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert "admin office of tenant default created" in made.stderr
    server = run_ipbx(tmp_path, config, port)
    try:
        with httpx.Client(base_url=f"http://{LOOPBACK}:{api_port}", timeout=10) as browser:
            sign_in = browser.get("/")
            home = browser.post(
                "/", data={"name": "office", "password": PASSWORD, "csrf": csrf_of(sign_in.text)},
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
            with browser.stream("GET", "/admin/default/events") as events:
                lines = events.iter_lines()
                assert next(lines) == ": connected"
                phone = SipClient(port, timeout=5)
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
    finally:
        code = server.stop()
    assert code == 0, server.log_tail(200)
