"""sipvicious's svwar, the scanner an attacker runs first, cannot tell the extensions
ipbx has from those it has not: every REGISTER or INVITE from a stranger gets the same
challenge, whether the user exists or not (RFC 3261 §22 leaves the answer to unknown
users open; Asterisk's `alwaysauthreject` makes the same choice)."""

from __future__ import annotations

import re
import subprocess

import pytest

from bench.harness import IpbxFactory

RANGE = range(1000, 1020)  # the server has 1000-1003


@pytest.mark.parametrize("method", ["REGISTER", "INVITE", "OPTIONS"])
@pytest.mark.parametrize("force", [False, True])
def test_svwar_finds_no_extension(ipbx_server: IpbxFactory, method: str, force: bool) -> None:
    server = ipbx_server(extensions=4)
    command = ["svwar", f"-e{RANGE.start}-{RANGE.stop - 1}", "127.0.0.1", "-p", str(server.port)]
    command += ["-m", method, *(["--force"] if force else [])]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    reported = {int(n) for n in re.findall(r"^\|\s*(\d+)\s*\|", result.stdout, re.M)}
    assert not reported & set(RANGE), f"svwar told extensions apart:\n{result.stdout}"
    assert result.returncode == 0, result.stderr
