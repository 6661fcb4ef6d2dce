"""The web administration under test: in process (`web`: the app over a PBX, with an
admin and a supervisor of the default tenant and an admin of tenant acme, each signed in
through the form), and as a running `ipbx serve` with the API listener and an admin made
by `ipbx user create` (`admin_site`, for a browser; its extension 1000 records every call,
so that the call history has a recording to play)."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import pytest
import yaml
from argon2 import PasswordHasher
from fastapi.testclient import TestClient

from ipbx.config import Config
from ipbx.pbx.extension import Extension, VoicemailConfig
from ipbx.web import accounts
from ipbx.web.accounts import create_user
from tests.support.apiclient import Api, serve_api
from tests.support.ports import LOOPBACK, free_port
from tests.support.server import IpbxServer, run_ipbx, write_config

ADMIN, PASSWORD = "office", "correct horse battery"


def serve_web(data_dir: Path) -> Iterator[Api]:
    """The API and the pages over a PBX with extension 1000 (with voicemail), and the
    users office (admin), watcher (supervisor) and acme-admin (admin of tenant acme)."""
    config = Config(
        data_dir=data_dir,
        extensions=[
            Extension(
                number="1000",
                name="Alice",
                password="secret1000",
                voicemail=VoicemailConfig(pin="1234"),
            ),
        ],
    )
    # These tests check what is refused and when, not argon2's cost: a cheap hash keeps
    # each of their many sign-ins at a millisecond (the default costs about 0.1 s).
    cheap = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    with mock.patch.multiple(accounts, _hasher=cheap, _DECOY=cheap.hash("decoy")):
        for api in serve_api(config):
            create_user(api.store, ADMIN, PASSWORD, "admin", "default")
            create_user(api.store, "watcher", PASSWORD, "supervisor", "default")
            create_user(api.store, "acme-admin", PASSWORD, "admin", "acme")
            yield api


@pytest.fixture
def web(tmp_path: Path) -> Iterator[Api]:
    yield from serve_web(tmp_path / "data")


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html
    return found[1]


def signed_in(client: TestClient, name: str, password: str = PASSWORD) -> tuple[int, str]:
    """Sign in through the form; the status and the page it ends on."""
    client.cookies.clear()
    form = client.get("/")
    answer = client.post("/", data={"name": name, "password": password, "csrf": csrf_of(form.text)})
    return answer.status_code, answer.text


@dataclass
class AdminSite:
    server: IpbxServer
    url: str  # the API listener's, where the pages are


@pytest.fixture
def admin_site(tmp_path: Path) -> Iterator[AdminSite]:
    api_port = free_port("tcp")
    config, port = write_config(tmp_path, api_port)
    written = yaml.safe_load(config.read_text())
    written["extensions"][0]["record"] = "always"
    config.write_text(yaml.safe_dump(written))
    made = subprocess.run(
        [sys.executable, "-m", "ipbx.cli", "user", "create", ADMIN, "--config", str(config),
         "--role", "admin"],
        input=PASSWORD + "\n", capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert f"admin {ADMIN} of tenant default created" in made.stderr
    server = run_ipbx(tmp_path, config, port)
    try:
        yield AdminSite(server, f"http://{LOOPBACK}:{api_port}")
    finally:
        code = server.stop()
    assert code == 0, server.log_tail(200)
