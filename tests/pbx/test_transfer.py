"""Transfers on a live server: a phone (raw SIP, the transferor A) talks to B and hands B
over to C, blind (REFER to C) or attended (A consults C first, then REFER with Replaces).
B and C are `ipbx phone`s playing their own tones; after the transfer each must hear
the other's, A is hung up on, and the call record shows the transfer."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from tests.support.phones import Caller
from tests.support.records import call_records
from tests.support.server import IpbxServer, extension_range, start_configured_ipbx
from tests.support.softphone import PhoneRun, analyse, ipbx_phone, write_tone

A, B, C = extension_range(3)
LOOPBACK = "127.0.0.1"
B_HZ, C_HZ = 700, 1000


def _answering(
    stack: ExitStack, workdir: Path, server: IpbxServer, who: Any, hz: int, *extra: str
) -> PhoneRun:
    tone = write_tone(workdir / f"{who.number}.wav", hz, 20)
    phone = stack.enter_context(
        ipbx_phone(
            workdir, server.port, who,
            "--register", "--answer", "--play", str(tone),
            "--record", str(workdir / f"heard-by-{who.number}.wav"), "--timeout", "30", *extra,
        )
    )  # fmt: skip
    phone.wait_for("registered as")
    return phone


@pytest.fixture
def server(tmp_path: Path) -> Any:
    ipbx = start_configured_ipbx(tmp_path / "ipbx", lambda config: None)
    yield ipbx
    code = ipbx.stop()
    print(f"--- ipbx (exit {code}) log tail:\n{ipbx.log_tail()}")


def _heard(workdir: Path, who: Any) -> float:
    return analyse(workdir / f"heard-by-{who.number}.wav").dominant_hz


def test_blind_transfer_connects_the_transferee_with_the_target(
    server: IpbxServer, tmp_path: Path
) -> None:
    with ExitStack() as stack:
        b = _answering(stack, tmp_path, server, B, B_HZ)
        c = _answering(stack, tmp_path, server, C, C_HZ, "--duration", "4")
        a = Caller(server)
        dialog = a.call(B.number)
        a.refer(dialog, f"<sip:{C.number}@{LOOPBACK}>")
        frags = a.until_hung_up(1)
        assert any(f.startswith(b"SIP/2.0 200") for f in frags), frags
        assert c.finish()[0] == 0, c.log
        assert b.finish()[0] == 0, b.log
    assert _heard(tmp_path, B) == pytest.approx(C_HZ, abs=20)
    assert _heard(tmp_path, C) == pytest.approx(B_HZ, abs=20)
    record = next(r for r in call_records(server) if r.callee == B.number)
    assert record.path == f"extension:{B.number},transfer:{C.number}"


def test_attended_transfer_replaces_the_consultation_call(
    server: IpbxServer, tmp_path: Path
) -> None:
    with ExitStack() as stack:
        b = _answering(stack, tmp_path, server, B, B_HZ)
        c = _answering(stack, tmp_path, server, C, C_HZ, "--duration", "5")
        a = Caller(server)
        first = a.call(B.number)
        consult = a.call(C.number)
        ours = consult.headers.get("From") or ""
        theirs = consult.headers.get("To") or ""
        replaces = f"{consult.call_id};to-tag={_tag(theirs)};from-tag={_tag(ours)}"
        a.refer(first, f"<sip:{C.number}@{LOOPBACK}?Replaces={quote(replaces, safe='')}>")
        frags = a.until_hung_up(2)
        assert any(f.startswith(b"SIP/2.0 200") for f in frags), frags
        assert c.finish()[0] == 0, c.log
        assert b.finish()[0] == 0, b.log
    assert _heard(tmp_path, B) == pytest.approx(C_HZ, abs=20)
    assert _heard(tmp_path, C) == pytest.approx(B_HZ, abs=20)
    record = next(r for r in call_records(server, count=2) if r.callee == B.number)
    assert record.path == f"extension:{B.number},transfer:{C.number}"


def _tag(header: str) -> str:
    return header.split(";tag=")[1].split(";")[0]
