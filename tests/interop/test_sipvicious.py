"""ipbx against sipvicious, the scanners an attacker runs first.

svwar cannot tell the extensions ipbx has from those it has not: every REGISTER or INVITE
from a stranger gets the same challenge, whether the user exists or not (RFC 3261 §22
leaves the answer to unknown users open; Asterisk's `alwaysauthreject` makes the same
choice). svcrack, guessing passwords, is banned after a few failures."""

from __future__ import annotations

import re
import socket
import subprocess
from pathlib import Path

import pytest

from tests.support.server import IpbxFactory

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


def _options_from(host: str, port: int) -> bool:
    """An OPTIONS from a socket bound to `host`; True if anything answers."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((host, 0))
        sock.settimeout(1.0)
        local = sock.getsockname()[1]
        sock.sendto(
            (
                f"OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP {host}:{local};branch=z9hG4bK{host.replace('.', '')}\r\n"
                f"From: <sip:probe@{host}>;tag=1\r\nTo: <sip:127.0.0.1>\r\n"
                f"Call-ID: probe-{host}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n"
                "Content-Length: 0\r\n\r\n"
            ).encode(),
            ("127.0.0.1", port),
        )
        try:
            return sock.recv(65535).startswith(b"SIP/2.0 ")
        except TimeoutError:
            return False


def test_svcrack_is_banned_before_it_reaches_the_password(
    ipbx_server: IpbxFactory, tmp_path: Path
) -> None:
    """svcrack guesses 24 wrong passwords before the right one; after `ban_failures` (10)
    its address hears nothing more, while phones at other addresses still do."""
    server = ipbx_server(extensions=1)
    words = tmp_path / "words.txt"
    words.write_text("\n".join([*(f"guess{i}" for i in range(24)), "secret1000"]) + "\n")
    result = subprocess.run(
        ["svcrack", "-u1000", "-d", str(words), "-p", str(server.port), "127.0.0.1"],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert "secret1000" not in result.stdout, f"svcrack found the password:\n{result.stdout}"
    assert "banned 127.0.0.1" in server.log_tail(400)
    assert not _options_from("127.0.0.1", server.port)
    assert _options_from("127.0.0.2", server.port)
