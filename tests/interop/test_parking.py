"""Call parking with real peers against a running ipbx (``parking: {slots: "701-720"}``):
1000 (`ipbx phone`, a 500 Hz voice) calls 1001 (baresip, 1000 Hz), which parks the
call with its transfer command (a blind REFER to 700, RFC 3515); 1000 waits in slot
701 hearing the music on hold (440 Hz) while 1001 hears the slot spoken and is hung up
on; 1002 (`ipbx phone`, 1500 Hz) dials 701 and the two hear each other. A park key on
701 (SIPp subscribed to the dialog package, RFC 4235, as 1003) sees the slot confirmed
and then terminated. Left parked past `timeout_seconds`, a call rings its parker
(baresip, not answering) and then the parker's no-answer forward (1002). The same in
virtual time, with more cases: tests/pbx/test_parking_in_memory.py."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from subprocess import Popen
from typing import Any

import pytest

from tests.support.baresip import BaresipControl, start_baresip, wait_registered
from tests.support.ports import free_port
from tests.support.processes import stop_process
from tests.support.records import call_records
from tests.support.server import IpbxServer, extension_range, start_configured_ipbx
from tests.support.sipp import start_sipp, write_users_csv
from tests.support.softphone import PhoneRun, analyse, ipbx_phone, near, timeline, write_tone

SCENARIO = Path(__file__).parent / "scenarios" / "subscribe_park_slot.xml"
CALLER, PARKER, RETRIEVER, WATCHER = extension_range(4)
CALLER_HZ, PARKER_HZ, RETRIEVER_HZ, MUSIC_HZ = 500, 1000, 1500, 440


def _wait_for_log(server: IpbxServer, text: str, seconds: float = 15.0) -> None:
    deadline = time.monotonic() + seconds
    while text not in server.log_tail(300):
        assert time.monotonic() < deadline, f"never logged {text!r}:\n{server.log_tail()}"
        time.sleep(0.05)


def _server(tmp_path: Path, edit: Callable[[dict[str, Any]], None]) -> IpbxServer:
    """ipbx with 1000-1003 and music on hold, its configuration changed by `edit`."""
    workdir = tmp_path / "ipbx"
    (workdir / "data" / "moh").mkdir(parents=True)
    write_tone(workdir / "data" / "moh" / "music.wav", MUSIC_HZ, 10, rate=16000)
    return start_configured_ipbx(workdir, edit, extensions=(CALLER, PARKER, RETRIEVER, WATCHER))


def _parker(tmp_path: Path, server: IpbxServer, answermode: str) -> tuple[Popen[bytes], int]:
    """1001 as baresip, sending its 1000 Hz voice; its process and control port."""
    port = free_port("tcp")
    process = start_baresip(
        tmp_path, registrar_port=server.port, user=PARKER, control_port=port,
        audio_file=write_tone(tmp_path / "parker.wav", PARKER_HZ, 30), answermode=answermode,
    )  # fmt: skip
    return process, port


def _caller(tmp_path: Path, server: IpbxServer, heard: Path) -> AbstractContextManager[PhoneRun]:
    """1000 (`ipbx phone`) calls the parker with its 500 Hz voice, recording `heard`."""
    return ipbx_phone(
        tmp_path, server.port, CALLER, "--call", PARKER.number,
        "--play", str(write_tone(tmp_path / "caller-voice.wav", CALLER_HZ, 30)),
        "--record", str(heard), "--timeout", "40",
    )  # fmt: skip


def test_a_call_parked_by_baresip_is_retrieved_from_slot_701(tmp_path: Path) -> None:
    server = _server(tmp_path, lambda config: config.update(parking={"slots": "701-720"}))
    baresip, control_port = _parker(tmp_path, server, "auto")
    users = write_users_csv(tmp_path / "watcher.csv", [WATCHER])
    watcher = start_sipp(
        SCENARIO, f"127.0.0.1:{server.port}", "-s", "701", "-inf", str(users),
        calls=1, workdir=tmp_path,
    )  # fmt: skip
    heard_by_caller, heard_by_retriever = tmp_path / "caller.wav", tmp_path / "retriever.wav"
    control = BaresipControl(control_port)
    try:
        wait_registered(server, PARKER.number)
        while not (tmp_path / "subscribed").exists():
            assert watcher.process.poll() is None, "SIPp ended before its first NOTIFY"
            time.sleep(0.05)
        with _caller(tmp_path, server, heard_by_caller) as caller:
            assert control.wait_event("CALL_ESTABLISHED", 10) is not None, control.events
            time.sleep(1.5)
            control.command("transfer", "700")
            _wait_for_log(server, "in slot 701")
            assert control.wait_event("CALL_CLOSED", 10) is not None, control.events
            time.sleep(1.0)  # the caller waits with the music
            with ipbx_phone(
                tmp_path, server.port, RETRIEVER, "--call", "701",
                "--play", str(write_tone(tmp_path / "retriever-voice.wav", RETRIEVER_HZ, 10)),
                "--record", str(heard_by_retriever), "--duration", "3", "--timeout", "20",
            ) as retriever:  # fmt: skip
                assert retriever.finish()[0] == 0, retriever.log
            assert caller.finish()[0] == 0, caller.log
        result = watcher.finish(timeout=15)
        assert (result.successful, result.failed) == (1, 0), result.errors()
    finally:
        control.close()
        stop_process(baresip)
        watcher.finish(timeout=1)
        server.stop()

    # The caller heard the parker, then the music, then whoever took the call.
    heard = timeline(heard_by_caller)
    parker_at = next(i for i, hz in enumerate(heard) if near(hz, PARKER_HZ))
    music_at = next(i for i, hz in enumerate(heard) if i > parker_at and near(hz, MUSIC_HZ))
    assert any(near(hz, RETRIEVER_HZ) for hz in heard[music_at:]), heard
    assert analyse(heard_by_retriever).dominant_hz == pytest.approx(CALLER_HZ, abs=20)
    # The parker heard the caller, then the slot spoken: sound that is neither the
    # caller's voice nor silence, for most of a second at least.
    [parker_heard] = (tmp_path / "snd").glob("dump-*-dec.wav")
    after_caller = timeline(parker_heard)
    spoken = [hz for hz in after_caller if hz is not None and not near(hz, CALLER_HZ)]
    assert len(spoken) >= 8, after_caller
    [record] = call_records(server)
    assert record.path == "extension:1001,park:701,retrieve:1002"


def test_a_call_left_parked_rings_its_parker_then_the_no_answer_forward(tmp_path: Path) -> None:
    def edit(config: dict[str, Any]) -> None:
        config["parking"] = {"slots": "701-720", "timeout_seconds": 2}
        config["extensions"][1]["forward"] = {"no_answer": "1002", "no_answer_seconds": 2}

    server = _server(tmp_path, edit)
    baresip, control_port = _parker(tmp_path, server, "manual")
    control = BaresipControl(control_port)
    heard_by_caller, heard_by_forward = tmp_path / "caller.wav", tmp_path / "forward.wav"

    def rang(times: int) -> bool:
        return sum(e.get("type") == "CALL_INCOMING" for e in control.events) >= times

    try:
        wait_registered(server, PARKER.number)
        with ipbx_phone(
            tmp_path, server.port, RETRIEVER, "--register", "--answer",
            "--play", str(write_tone(tmp_path / "forward-voice.wav", RETRIEVER_HZ, 10)),
            "--record", str(heard_by_forward), "--duration", "2", "--timeout", "30",
        ) as forward:  # fmt: skip
            forward.wait_for("registered as")
            with _caller(tmp_path, server, heard_by_caller) as caller:
                assert control.wait_event("CALL_INCOMING", 10) is not None, control.events
                control.command("accept")
                assert control.wait_event("CALL_ESTABLISHED", 10) is not None, control.events
                control.command("transfer", "700")
                _wait_for_log(server, "in slot 701")
                deadline = time.monotonic() + 15
                while not rang(2):  # the parker again, after the time-out; left ringing
                    assert time.monotonic() < deadline, control.events
                    time.sleep(0.05)
                assert forward.finish()[0] == 0, forward.log
                assert caller.finish()[0] == 0, caller.log
    finally:
        control.close()
        stop_process(baresip)
        server.stop()
    heard = timeline(heard_by_caller)
    music_at = next(i for i, hz in enumerate(heard) if near(hz, MUSIC_HZ))
    assert any(near(hz, RETRIEVER_HZ) for hz in heard[music_at:]), heard
    assert analyse(heard_by_forward).dominant_hz == pytest.approx(CALLER_HZ, abs=20)
    [record] = call_records(server)
    assert record.path == "extension:1001,park:701,extension:1002"
