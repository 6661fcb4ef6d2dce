"""Linphone's console client (linphonec) run headless as PEERS.md describes: commands
piped to its stdin, `soundcard use files` so it plays and records WAV files instead of a
sound card, and an rc with `auto_net_state_mon=0` (else it never opens its SIP port).
With that setting nothing tells the core that the network is up, so without
`register_only_when_network_is_up=0` it never sends its REGISTER. Linphone asks for
Expires 3600 and registers with a +sip.instance Contact.

What it does is read back from its console: "Call N with X connected.", "Receiving tone
D from X", "Call N with X ended (...)". A digit typed alone on a line is sent as DTMF
(RFC 4733 by default), `pause` and `resume` hold and resume the call, `terminate` hangs up.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support.ports import LOOPBACK, free_port, free_udp_range
from tests.support.processes import stop_process
from tests.support.server import Extension


def _read(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


@dataclass
class Linphonec:
    """One linphonec process: commands go to its stdin, its console output and debug log
    to files."""

    process: subprocess.Popen[bytes]
    console_path: Path
    log_path: Path

    @property
    def console(self) -> str:
        return _read(self.console_path)

    @property
    def log(self) -> str:
        """Its console output and the tail of its debug log, for failure messages."""
        debug = "\n".join(_read(self.log_path).splitlines()[-300:])
        return f"--- linphonec console:\n{self.console}\n--- linphonec log (tail):\n{debug}"

    def send(self, command: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(f"{command}\n".encode())
        self.process.stdin.flush()

    def wait_registered(self, timeout: float = 10.0) -> None:
        """Wait until Linphone itself reports its account registered (200 to REGISTER)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.process.poll() is None:
            if "to [LinphoneRegistrationOk]" in _read(self.log_path):
                return
            time.sleep(0.1)
        raise AssertionError(f"linphonec did not register:\n{self.log}")

    def wait_console(self, pattern: str, after: int = 0, timeout: float = 10.0) -> int:
        """Wait for the regular expression in the console output past offset `after`;
        the offset just past the match."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.process.poll() is None:
            match = re.compile(pattern).search(self.console, after)
            if match:
                return match.end()
            time.sleep(0.05)
        raise AssertionError(f"linphonec never said {pattern!r}:\n{self.log}")

    def tones_received(self, after: int = 0) -> str:
        """The DTMF digits Linphone reported receiving past console offset `after`."""
        return "".join(re.findall(r"Receiving tone (.) from", self.console[after:]))


@contextmanager
def linphonec(workdir: Path, registrar_port: int, user: Extension) -> Iterator[Linphonec]:
    """Start linphonec with its own HOME and rc under workdir, file-based audio, auto-answer,
    registering as `user` at 127.0.0.1:registrar_port; it is told to quit when the block
    ends, and stopped by PID if it does not."""
    home = workdir / "linphone-home"
    (home / ".local" / "share" / "linphone").mkdir(parents=True)
    rtp_first, rtp_last = free_udp_range(4)
    rc = workdir / "linphonerc"
    rc.write_text(
        "[sip]\n"
        f"sip_port={free_port('udp')}\n"
        "sip_tcp_port=0\n"
        "sip_tls_port=0\n"
        "auto_net_state_mon=0\n"
        "register_only_when_network_is_up=0\n"
        "[rtp]\n"
        f"audio_rtp_port={rtp_first}-{rtp_last}\n"
    )
    console_path = workdir / "linphonec-console.log"
    log_path = workdir / "linphonec.log"
    with console_path.open("wb") as console:
        process = subprocess.Popen(
            ["linphonec", "-c", str(rc), "-d", "6", "-l", str(log_path)],
            cwd=workdir, env={**os.environ, "HOME": str(home)},
            stdin=subprocess.PIPE, stdout=console, stderr=subprocess.STDOUT,
        )  # fmt: skip
    phone = Linphonec(process, console_path, log_path)
    try:
        phone.send("soundcard use files")
        phone.send("autoanswer enable")
        phone.send(
            f"register sip:{user.number}@{LOOPBACK} sip:{LOOPBACK}:{registrar_port} {user.password}"
        )
        yield phone
    finally:
        if process.poll() is None:
            phone.send("quit")
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                stop_process(process)
