"""`ipbx phone` against baresip, through ipbx: baresip registers as 1000 and answers
automatically, sending a 1 kHz tone from a file; `ipbx phone` registered as 1001 calls it
with a 700 Hz tone. Each must hear the other's tone: ours in baresip's decoded dump
(sndfile module), baresip's in our recording.

baresip's Contact user is `1000-0x...` with +sip.instance (PEERS.md): the PBX has to route
to the registered Contact URI as sent, which this test exercises too.

baresip 1.0.0 (libre) gives up on a 401 that carries any challenge it cannot answer: ipbx
offers MD5 and SHA-256 (RFC 8760), and libre's auth handler fails the whole REGISTER with
ENOSYS on the SHA-256 one instead of skipping it. Until ipbx can be told to offer MD5
only, the call test runs its server with a sitecustomize that does so, and an xfail test
keeps the defect visible (it turns into a failure the day it is fixed: drop the shim then).
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from bench.harness import (
    IpbxFactory,
    IpbxServer,
    extension_range,
    start_baresip,
    stop_process,
)
from tests.phone.softphone import analyse, ipbx_phone, write_tone

BARESIP, PHONE = extension_range(2)
TOLERANCE_HZ = 20

pytestmark = pytest.mark.skipif(shutil.which("baresip") is None, reason="baresip not installed")

MD5_ONLY = """\
import functools

from ipbx.sip import auth

_init = auth.DigestAuthenticator.__init__


@functools.wraps(_init)
def _md5_only(self, *args, **kwargs):
    _init(self, *args, **kwargs)
    self.algorithms = ("MD5",)


auth.DigestAuthenticator.__init__ = _md5_only
"""


@pytest.fixture
def md5_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Servers started from now on challenge with MD5 only (see the module docstring):
    the ipbx process inherits PYTHONPATH and imports sitecustomize at startup."""
    shim = tmp_path / "md5-only"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(MD5_ONLY)
    monkeypatch.setenv("PYTHONPATH", str(shim))


def _wait_registered(server: IpbxServer, number: str, timeout: float = 10.0) -> None:
    """The registrar logs each successful REGISTER; wait for baresip's."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if f"{number} registered" in server.log_tail(200):
            return
        time.sleep(0.1)
    raise AssertionError(f"{number} did not register:\n{server.log_tail()}")


@pytest.mark.xfail(
    strict=True, raises=AssertionError, reason="ipbx offers SHA-256 next to MD5; libre fails"
)
def test_baresip_registers_with_ipbx_default_challenges(
    ipbx_server: IpbxFactory, tmp_path: Path
) -> None:
    server = ipbx_server(extensions=1)
    tone = write_tone(tmp_path / "tone.wav", 1000, 1)
    baresip = start_baresip(
        tmp_path, registrar_port=server.port, user=BARESIP, audio_file=tone, seconds=10
    )
    try:
        _wait_registered(server, BARESIP.number, timeout=3)
    finally:
        stop_process(baresip)


@pytest.mark.usefixtures("md5_only")
def test_ipbx_phone_calls_baresip(ipbx_server: IpbxFactory, tmp_path: Path) -> None:
    server = ipbx_server(extensions=2)
    baresip_tone = write_tone(tmp_path / "1000hz.wav", 1000, 5)
    our_tone = write_tone(tmp_path / "700hz.wav", 700, 3)
    recording = tmp_path / "heard-by-ipbx-phone.wav"
    baresip = start_baresip(
        tmp_path, registrar_port=server.port, user=BARESIP, audio_file=baresip_tone, seconds=25
    )
    try:
        _wait_registered(server, BARESIP.number)
        with ipbx_phone(
            tmp_path, server.port, PHONE,
            "--register", "--call", BARESIP.number, "--play", str(our_tone),
            "--record", str(recording), "--timeout", "20",
        ) as phone:  # fmt: skip
            status, out = phone.finish()
    finally:
        stop_process(baresip)
    baresip_log = (tmp_path / f"baresip-{BARESIP.number}.log").read_text(errors="replace")
    assert (status, out.splitlines()[-1]) == (0, "result: answered"), phone.log + baresip_log
    heard_by_us = analyse(recording)
    assert heard_by_us.dominant_hz == pytest.approx(1000, abs=TOLERANCE_HZ)
    assert heard_by_us.seconds >= 1.0
    dumps = sorted((tmp_path / "snd").glob("dump-*-dec.wav"))
    assert dumps, baresip_log
    heard_by_baresip = analyse(dumps[-1])
    assert heard_by_baresip.dominant_hz == pytest.approx(700, abs=TOLERANCE_HZ)
    assert heard_by_baresip.seconds >= 1.0
