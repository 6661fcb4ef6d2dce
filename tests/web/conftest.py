"""A running `ipbx serve` with the API listener and an admin made by `ipbx user create`,
for the tests that use the web administration as a browser does. Extension 1000 records
every call, so that the call history has a recording to play."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.support.ports import LOOPBACK, free_port
from tests.support.server import IpbxServer, run_ipbx, write_config

ADMIN, PASSWORD = "office", "correct horse battery"


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
