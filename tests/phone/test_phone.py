"""`ipbx phone` against a real ipbx: registration with digest, calls through the B2BUA
with anchored media, the echo test, RFC 4733 DTMF and RFC 3264 hold/resume.

Audio is judged by its dominant frequency (numpy FFT): each side plays its own tone and
must record the other's.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ipbx.cli import main
from ipbx.phone.ua import CallFailed, Phone, PhoneSettings
from ipbx.sip.transaction import Address
from tests.support.server import IpbxServer, extension_range
from tests.support.softphone import analyse, echo_of, ipbx_phone, write_tone

CALLER, CALLEE, ABSENT = extension_range(3)
TOLERANCE_HZ = 20
REGISTERED = "registered as"


def test_two_phones_hear_each_other(ipbx: IpbxServer, tmp_path: Path) -> None:
    """1000 calls 1001, which answers; each plays a tone and records the other's."""
    high = write_tone(tmp_path / "1000hz.wav", 1000, 3)
    low = write_tone(tmp_path / "700hz.wav", 700, 3)
    callee_wav, caller_wav = tmp_path / "callee.wav", tmp_path / "caller.wav"
    with ipbx_phone(
        tmp_path, ipbx.port, CALLEE,
        "--register", "--answer", "--play", str(low), "--record", str(callee_wav),
        "--timeout", "20",
    ) as callee:  # fmt: skip
        callee.wait_for(REGISTERED)
        with ipbx_phone(
            tmp_path, ipbx.port, CALLER,
            "--call", CALLEE.number, "--play", str(high), "--record", str(caller_wav),
            "--timeout", "20",
        ) as caller:  # fmt: skip
            caller_status, caller_out = caller.finish()
        callee_status, callee_out = callee.finish()
    assert (caller_status, caller_out.splitlines()[-1]) == (0, "result: answered"), caller.log
    assert (callee_status, callee_out.splitlines()[-1]) == (0, "result: answered"), callee.log
    heard_by_caller, heard_by_callee = analyse(caller_wav), analyse(callee_wav)
    assert heard_by_caller.dominant_hz == pytest.approx(700, abs=TOLERANCE_HZ)
    assert heard_by_callee.dominant_hz == pytest.approx(1000, abs=TOLERANCE_HZ)
    assert heard_by_caller.seconds >= 1.0
    assert heard_by_callee.seconds >= 1.0
    assert "(expires 0): 200 OK" in callee.log  # unregistered on exit


def test_calling_an_unregistered_extension_fails_with_480(ipbx: IpbxServer, tmp_path: Path) -> None:
    with ipbx_phone(tmp_path, ipbx.port, CALLER, "--call", ABSENT.number, "--timeout", "10") as p:
        status, out = p.finish()
    assert status == 1
    assert out.splitlines()[-1].startswith("result: failed 480"), p.log


def test_echo_test_returns_our_own_tone(ipbx: IpbxServer, tmp_path: Path) -> None:
    echoed = echo_of(ipbx, tmp_path, write_tone(tmp_path / "1000hz.wav", 1000, 2))
    assert echoed.dominant_hz == pytest.approx(1000, abs=TOLERANCE_HZ)
    assert echoed.seconds >= 1.0


def test_callee_prints_the_callers_dtmf(ipbx: IpbxServer, tmp_path: Path) -> None:
    """RFC 4733 telephone-events relayed by the B2BUA reach the callee in order."""
    with ipbx_phone(
        tmp_path, ipbx.port, CALLEE, "--register", "--answer", "--timeout", "20"
    ) as callee:
        callee.wait_for(REGISTERED)
        with ipbx_phone(
            tmp_path, ipbx.port, CALLER, "--call", CALLEE.number, "--dtmf", "159#*0",
            "--timeout", "20",
        ) as caller:  # fmt: skip
            caller_status, _ = caller.finish()
        callee_status, callee_out = callee.finish()
    assert caller_status == 0, caller.log
    assert callee_status == 0, callee.log
    digits = [line.split(": ")[1] for line in callee_out.splitlines() if line.startswith("dtmf:")]
    assert digits == list("159#*0")


def test_hold_then_resume_keeps_audio_flowing(ipbx: IpbxServer, tmp_path: Path) -> None:
    """The caller holds at 1.5 s (sendonly) and resumes at 3 s. The callee answers
    recvonly and goes quiet meanwhile (RFC 3264 §8.4), so the caller hears about
    1.5 + 2 s of its 5 s tone: more means the hold was ignored, less that the resume
    did not bring the audio back."""
    high = write_tone(tmp_path / "1000hz.wav", 1000, 5)
    low = write_tone(tmp_path / "700hz.wav", 700, 5)
    callee_wav, caller_wav = tmp_path / "callee.wav", tmp_path / "caller.wav"
    with ipbx_phone(
        tmp_path, ipbx.port, CALLEE,
        "--register", "--answer", "--play", str(low), "--record", str(callee_wav),
        "--duration", "8", "--timeout", "20",
    ) as callee:  # fmt: skip
        callee.wait_for(REGISTERED)
        with ipbx_phone(
            tmp_path, ipbx.port, CALLER,
            "--call", CALLEE.number, "--play", str(high), "--record", str(caller_wav),
            "--hold", "1.5", "--timeout", "20",
        ) as caller:  # fmt: skip
            caller_status, _ = caller.finish()
        callee_status, _ = callee.finish()
    assert caller_status == 0, caller.log
    assert callee_status == 0, callee.log
    assert "on hold" in caller.log and "resumed" in caller.log
    assert "we are now recvonly" in callee.log and "we are now sendrecv" in callee.log
    heard_by_caller, heard_by_callee = analyse(caller_wav), analyse(callee_wav)
    assert heard_by_caller.dominant_hz == pytest.approx(700, abs=TOLERANCE_HZ)
    assert 2.8 <= heard_by_caller.seconds <= 4.2, caller.log
    # The holding side keeps sending (sendonly): the callee hears the whole tone.
    assert heard_by_callee.dominant_hz == pytest.approx(1000, abs=TOLERANCE_HZ)
    assert heard_by_callee.seconds >= 4.5


def test_wrong_password_is_refused(ipbx: IpbxServer, tmp_path: Path) -> None:
    with ipbx_phone(
        tmp_path, ipbx.port, CALLER, "--password", "wrong", "--register", "--timeout", "10"
    ) as p:
        status, out = p.finish()
    assert status == 1
    assert out.splitlines()[-1].startswith("result: failed 401"), p.log


@pytest.mark.parametrize(
    "args",
    [
        ["--answer"],  # nobody can call a phone that did not register
        ["--call", "1001", "--answer"],
        ["--call", "1001", "--codec", "G729"],
        ["--call", "1001", "--rtp-ports", "5000"],
        ["--call", "1001", "--play", "/nonexistent.wav"],
    ],
)
def test_usage_errors_exit_2(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    base = ["phone", "--server", "127.0.0.1:5060", "--user", "1000"]
    try:
        status = main([*base, *args])
    except SystemExit as exc:  # argparse's own errors
        status = int(exc.code or 0)
    assert status == 2


@contextlib.asynccontextmanager
async def alice_and_bob(ipbx: IpbxServer, transport: str) -> AsyncIterator[tuple[Phone, Phone]]:
    """Two Phone objects on the server; Bob registered and accepting calls."""
    server = Address(transport, "127.0.0.1", ipbx.port)
    alice = await Phone.start(PhoneSettings(server, CALLER.number, CALLER.password))
    bob = await Phone.start(PhoneSettings(server, CALLEE.number, CALLEE.password))
    try:
        assert (await bob.register(120)).status == 200
        bob.accepting = True
        yield alice, bob
    finally:
        await alice.close()
        await bob.close()


def test_phone_api_over_tcp(ipbx: IpbxServer) -> None:
    """The Phone class from Python: register both ends over TCP, call, hang up."""

    async def scenario() -> None:
        async with alice_and_bob(ipbx, "TCP") as (alice, bob):
            calling = asyncio.create_task(alice.call(CALLEE.number))
            incoming = await bob.incoming.get()
            answered = await bob.answer(incoming)
            call = await calling
            assert call.media.codec is not None and call.media.codec.name == "PCMU"
            await call.hangup()
            await asyncio.wait_for(answered.ended.wait(), 5)
            assert answered.ended_by_peer
            with pytest.raises(CallFailed) as failed:
                await alice.call(ABSENT.number)
            assert failed.value.status == 480

    asyncio.run(asyncio.wait_for(scenario(), 20))


def test_giving_up_on_a_ringing_call_cancels_it(ipbx: IpbxServer) -> None:
    """A caller that stops waiting sends CANCEL; the callee sees its INVITE cancelled."""

    async def scenario() -> None:
        async with alice_and_bob(ipbx, "UDP") as (alice, bob):
            calling = asyncio.create_task(alice.call(CALLEE.number))
            incoming = await asyncio.wait_for(bob.incoming.get(), 5)
            await asyncio.sleep(0.3)
            calling.cancel()
            await asyncio.wait_for(incoming.cancelled.wait(), 5)
            with pytest.raises(asyncio.CancelledError):
                await calling

    asyncio.run(asyncio.wait_for(scenario(), 20))
