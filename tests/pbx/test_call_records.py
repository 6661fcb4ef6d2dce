"""Call records and recordings of real calls between `ipbx phone`s: the record says who
called whom, how it ended and how the media was; a recorded call keeps each side on
its own channel, even when the server is killed in the middle of it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ipbx.store import CallRecord
from tests.support.ports import free_port
from tests.support.records import call_records
from tests.support.server import CALLEE, CALLER, OTHER, IpbxServer, start_configured_ipbx
from tests.support.sipclient import SipClient, ack_for, in_dialog, send_authenticated_invite
from tests.support.softphone import analyse, ipbx_phone, talk, write_tone

TOLERANCE_HZ = 20


def _record_callee(config: dict[str, Any]) -> None:
    config["extensions"][1]["record"] = "always"


@pytest.fixture
def recording_ipbx(tmp_path: Path) -> Iterator[IpbxServer]:
    """ipbx that records every call to or from 1001."""
    server = start_configured_ipbx(tmp_path / "ipbx", _record_callee)
    try:
        yield server
    finally:
        code = server.stop()
        print(f"--- ipbx (pid {server.pid}, exit {code}) log tail:\n{server.log_tail()}")


def test_a_recorded_call_has_a_record_and_one_channel_per_side(
    recording_ipbx: IpbxServer, tmp_path: Path
) -> None:
    started = time.time()
    talk(recording_ipbx, tmp_path, 3.0)
    [record] = call_records(recording_ipbx)
    assert (record.caller, record.callee, record.result) == ("1000", "1001", "answered")
    assert record.answered is not None
    assert started <= record.started <= record.answered <= record.ended <= time.time()
    assert [leg.role for leg in record.legs] == ["caller", "callee"]
    for leg in record.legs:
        assert leg.codec == "PCMU"
        assert leg.packets_received >= 120, leg
        assert leg.packets_lost == 0, leg
        assert leg.mos is not None and leg.mos > 4.0, leg
    assert record.recording is not None
    path = recording_ipbx.data_dir / "recordings" / record.recording
    with wave.open(str(path)) as wav:
        assert (wav.getnchannels(), wav.getframerate()) == (2, 8000)
    caller_side, callee_side = analyse(path, 0), analyse(path, 1)
    assert caller_side.seconds == pytest.approx(record.ended - record.answered, abs=0.5)
    assert caller_side.dominant_hz == pytest.approx(1000, abs=TOLERANCE_HZ)
    assert callee_side.dominant_hz == pytest.approx(700, abs=TOLERANCE_HZ)


def test_ipbx_calls_lists_the_record(recording_ipbx: IpbxServer, tmp_path: Path) -> None:
    talk(recording_ipbx, tmp_path, 1.0)
    [record] = call_records(recording_ipbx)
    command = [sys.executable, "-m", "ipbx.cli", "calls", "--config"]
    config = str(recording_ipbx.config_path)
    listed = subprocess.run([*command, config, "--json"], capture_output=True, check=True)
    assert CallRecord(**{**json.loads(listed.stdout), "legs": record.legs}) == record
    assert [leg["role"] for leg in json.loads(listed.stdout)["legs"]] == ["caller", "callee"]
    text = subprocess.run([*command, config], capture_output=True, text=True, check=True)
    assert "1000 -> 1001 answered" in text.stdout and "caller PCMU loss 0.0%" in text.stdout


def test_a_call_not_involving_a_recorded_extension_is_not_recorded(
    recording_ipbx: IpbxServer, tmp_path: Path
) -> None:
    with ipbx_phone(tmp_path, recording_ipbx.port, OTHER, "--call", "9196", "--duration", "1") as p:
        status, _ = p.finish()
    assert status == 0, p.log
    [record] = call_records(recording_ipbx)
    # The echo test is ipbx's own service: nobody answered it.
    assert (record.callee, record.result, record.recording) == ("9196", "service", None)


def test_a_recording_cut_by_killing_the_server_is_a_valid_file_of_the_call(
    recording_ipbx: IpbxServer, tmp_path: Path
) -> None:
    """SIGKILL, the hardest stop: no clean-up runs, the file must already be valid."""
    tone = write_tone(tmp_path / "700hz.wav", 700, 20)
    with ipbx_phone(
        tmp_path, recording_ipbx.port, CALLEE,
        "--register", "--answer", "--play", str(tone), "--timeout", "15",
    ) as callee:  # fmt: skip
        callee.wait_for("registered as")
        with ipbx_phone(
            tmp_path, recording_ipbx.port, CALLER,
            "--call", CALLEE.number, "--play", str(tone), "--timeout", "15",
        ) as caller:  # fmt: skip
            caller.wait_for("answered")
            answered = time.monotonic()
            time.sleep(3.0)
            os.kill(recording_ipbx.pid, signal.SIGKILL)
            talked = time.monotonic() - answered
            recording_ipbx.process.wait(5)
    [path] = (recording_ipbx.data_dir / "recordings").glob("*/*.wav")
    with wave.open(str(path)) as wav:
        assert (wav.getnchannels(), wav.getframerate()) == (2, 8000)
        frames = wav.readframes(wav.getnframes())
        assert len(frames) == wav.getnframes() * 4  # the header matches the data
    assert analyse(path, 1).seconds == pytest.approx(talked, abs=0.5)
    assert analyse(path, 1).dominant_hz == pytest.approx(700, abs=TOLERANCE_HZ)


def test_echo_test_hears_sip_info_digits(recording_ipbx: IpbxServer) -> None:
    """application/dtmf-relay in SIP INFO, as many desk phones send it."""
    client = SipClient(recording_ipbx.port, timeout=3)
    offer = (
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        f"m=audio {free_port('udp')} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
    ).encode()
    contact = f"Contact: <sip:{OTHER.number}@127.0.0.1:{client.local_port}>"
    send_authenticated_invite(
        client, "sip:9196@127.0.0.1", [contact, "Content-Type: application/sdp"], offer,
        user=OTHER.number, password=OTHER.password,
    )  # fmt: skip
    while (ok := client.receive()) is not None and ok.status < 200:
        pass
    assert ok is not None and ok.status == 200
    client.send(ack_for(ok, client))
    dialog = (ok.contacts[0].uri, ok.headers.get("From"), ok.headers.get("To"), ok.call_id)
    for cseq, digit in enumerate("42*", start=3):
        body = f"Signal={digit}\r\nDuration=160\r\n".encode()
        client.send(
            in_dialog(client, "INFO", *map(str, dialog), cseq, body=body,
                      content_type="application/dtmf-relay")
        )  # fmt: skip
        answer = client.receive()
        assert answer is not None and answer.status == 200
    client.send(in_dialog(client, "BYE", *map(str, dialog), 6))
    answer = client.receive()
    assert answer is not None and answer.status == 200
    client.close()
    [record] = call_records(recording_ipbx)
    assert (record.caller, record.callee, record.digits) == ("1002", "9196", "42*")
