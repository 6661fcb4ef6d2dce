"""`ipbx phone` against Linphone (linphonec), through ipbx: linphonec registers as 1000 and
answers automatically, sending a 1 kHz tone from a file; `ipbx phone` registered as 1001
calls it with a 700 Hz tone. Each must hear the other's tone: ours in what linphonec records,
linphonec's in our recording.

linphonec runs headless as PEERS.md describes: commands piped to its stdin, `soundcard use
files` so it plays and records WAV files instead of a sound card, and an rc with
`auto_net_state_mon=0` (else it never opens its SIP port). With that setting nothing tells
the core that the network is up, so without `register_only_when_network_is_up=0` it never
sends its REGISTER. Linphone asks for Expires 3600 and registers with a
+sip.instance Contact.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.ports import free_port, free_udp_range
from tests.support.processes import stop_process
from tests.support.server import Extension, IpbxFactory, extension_range
from tests.support.softphone import analyse, ipbx_phone, write_tone

LINPHONE, PHONE = extension_range(2)
TOLERANCE_HZ = 20


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
    def log(self) -> str:
        """Its console output and the tail of its debug log, for failure messages."""
        console = _read(self.console_path)
        debug = "\n".join(_read(self.log_path).splitlines()[-300:])
        return f"--- linphonec console:\n{console}\n--- linphonec log (tail):\n{debug}"

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
            f"register sip:{user.number}@127.0.0.1 sip:127.0.0.1:{registrar_port} {user.password}"
        )
        yield phone
    finally:
        if process.poll() is None:
            phone.send("quit")
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                stop_process(process)


def test_ipbx_phone_calls_linphone(ipbx_server: IpbxFactory, tmp_path: Path) -> None:
    server = ipbx_server(extensions=2)
    linphone_tone = write_tone(tmp_path / "1000hz.wav", 1000, 6)
    our_tone = write_tone(tmp_path / "700hz.wav", 700, 3)
    recording = tmp_path / "heard-by-ipbx-phone.wav"
    linphone_recording = tmp_path / "heard-by-linphone.wav"
    with linphonec(tmp_path, server.port, LINPHONE) as linphone:
        linphone.wait_registered()
        assert f"{LINPHONE.number} registered 1 contact(s)" in server.log_tail(200)
        linphone.send(f"play {linphone_tone}")
        linphone.send(f"record {linphone_recording}")
        with ipbx_phone(
            tmp_path, server.port, PHONE,
            "--register", "--call", LINPHONE.number, "--play", str(our_tone),
            "--record", str(recording), "--timeout", "20",
        ) as phone:  # fmt: skip
            status, out = phone.finish()
    assert (status, out.splitlines()[-1]) == (0, "result: answered"), phone.log + linphone.log
    heard_by_us = analyse(recording)
    assert heard_by_us.dominant_hz == pytest.approx(1000, abs=TOLERANCE_HZ)
    assert heard_by_us.seconds >= 1.0
    assert linphone_recording.exists(), linphone.log
    heard_by_linphone = analyse(linphone_recording)
    assert heard_by_linphone.dominant_hz == pytest.approx(700, abs=TOLERANCE_HZ)
    assert heard_by_linphone.seconds >= 1.0
