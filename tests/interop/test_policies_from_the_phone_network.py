"""An extension's own policies apply to calls from the phone network however they reach
it, with real peers (tests/support/pstn.py): SIPp as the provider's gateway dials DIDs
that go to 1001 directly, through a ring group, through a menu option and through
1002's forwarding; 1001, a SIPp UAS echoing its RTP, records every call (`record:
always`), so each call leaves a WAV with the caller's tone. A caller on 1001's own
blacklist entry is turned away on the DID without 1001's phone ringing. Last, a DID
call answered by 1003 (a SIPp UAS) is transferred blind to 1001 (REFER), and a DID
call rings 1000 (a SIPp UAS that only rings) and 1001 picks it up with *8 from an
`ipbx phone`: those calls are recorded too."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.support.ports import LOOPBACK, free_port
from tests.support.processes import stop_process
from tests.support.pstn import (
    TONE_HZ,
    DidCall,
    Placed,
    dial,
    dialled,
    invites_received,
    ip_trunk,
    phone,
    start_dialling,
)
from tests.support.records import call_records
from tests.support.server import (
    CALLEE,
    CALLER,
    OTHER,
    Extension,
    IpbxServer,
    start_configured_ipbx,
)
from tests.support.softphone import analyse, ipbx_phone, write_tone
from tests.support.trunks import eventually

DIRECT, GROUP, MENU, FORWARDED = "+15550100", "+15550101", "+15550102", "+15550103"
RINGING = "+15550104"  # rings 1000
TRANSFERRED = "+15550105"  # to 1003, who transfers it to 1001
TRANSFERRING = Extension("1003", "User 1003", "secret1003")
UAS_REFER = Path(__file__).parent / "scenarios" / "uas_refer.xml"
BLACKLISTED = "+13125550123"
TALK_SECONDS = 1.5


def policies(gateway_port: int, greeting: Path) -> Any:
    """1001 records every call and blacklists BLACKLISTED; 1002 forwards always to
    1001; a DID for each way to 1001, one that rings 1000 and one to 1003."""

    def edit(config: dict[str, Any]) -> None:
        ip_trunk(config, gateway_port)
        extensions = {e["number"]: e for e in config["extensions"]}
        extensions["1001"]["record"] = "always"
        extensions["1002"]["forward"] = {"always": "1001"}
        config["groups"] = [{"name": "sales", "members": ["1001"]}]
        config["ivrs"] = [
            {"name": "main", "greeting": f"file:{greeting}", "options": {"1": "extension:1001"}}
        ]
        config["numbers"] = [
            {"number": DIRECT, "destination": "extension:1001"},
            {"number": GROUP, "destination": "group:sales"},
            {"number": MENU, "destination": "ivr:main"},
            {"number": FORWARDED, "destination": "extension:1002"},
            {"number": RINGING, "destination": "extension:1000"},
            {"number": TRANSFERRED, "destination": "extension:1003"},
        ]
        config["blacklist"] = [{"pattern": BLACKLISTED, "extension": "1001"}]

    return edit


def transferred(server: IpbxServer, gateway_port: int, workdir: Path) -> Placed:
    """A DID call to 1003, whose phone answers and transfers it to 1001 by REFER."""
    refer_to = f"sip:{CALLEE.number}@{LOOPBACK}:{server.port}"
    with phone(server, workdir, TRANSFERRING, 1, UAS_REFER, "-key", "refer_to", refer_to) as carol:
        placed = dial(server, gateway_port, workdir, [DidCall(TRANSFERRED)], TALK_SECONDS + 1)
        transferring = carol.finish(timeout=10)
    assert transferring.successful == 1, transferring.errors()
    return placed


def picked_up(server: IpbxServer, gateway_port: int, workdir: Path) -> Placed:
    """A DID call rings 1000's phone; 1001 dials *8 from an `ipbx phone` and takes it."""
    with phone(server, workdir, CALLER, calls=1, scenario="uas_ring") as ringing:
        gateway = start_dialling(server, gateway_port, workdir, [DidCall(RINGING)], TALK_SECONDS)
        try:
            eventually(lambda: bool(invites_received(ringing)), 10, "1000's phone rings")
            # The gateway hangs up (its scenario expects to): --duration only bounds it.
            with ipbx_phone(
                workdir, server.port, CALLEE, "--call", "*8", "--duration",
                str(TALK_SECONDS + 5), "--timeout", "15",
            ) as picker:  # fmt: skip
                status, out = picker.finish(20)
            assert (status, out.strip().splitlines()[-1]) == (0, "result: answered"), picker.log
        finally:
            placed = dialled(gateway)
    return placed


def test_record_always_and_the_blacklist_hold_for_calls_from_a_trunk(tmp_path: Path) -> None:
    gateway_port = free_port("udp")
    greeting = write_tone(tmp_path / "greeting.wav", 440, 0.3)
    server = start_configured_ipbx(
        tmp_path / "ipbx", policies(gateway_port, greeting),
        extensions=(CALLER, CALLEE, OTHER, TRANSFERRING),
    )  # fmt: skip
    calls = [
        DidCall(DIRECT, caller=BLACKLISTED), DidCall(DIRECT), DidCall(GROUP),
        DidCall(MENU, key="1"), DidCall(FORWARDED),
    ]  # fmt: skip
    try:
        with phone(server, tmp_path / "sipp", CALLEE, calls=5) as bob:
            placed = dial(server, gateway_port, tmp_path / "sipp", calls, TALK_SECONDS)
            transfer = transferred(server, gateway_port, tmp_path / "transfer")
            answered = bob.finish(timeout=10)
        # The blacklisted caller got 603 and 1001's phone never rang for it; five calls
        # talked.
        assert placed.declined == [f"{BLACKLISTED} to {DIRECT}: 603"], placed.result.errors()
        assert not [line for line in invites_received(bob) if BLACKLISTED in line]
        assert (placed.result.successful, transfer.result.successful) == (5, 1)
        assert answered.successful == 5, answered.errors()
        pickup = picked_up(server, gateway_port, tmp_path / "pickup")
        assert pickup.result.successful == 1, pickup.result.errors()
        records = call_records(server, count=len(calls) + 2)
    finally:
        code = stop_process(server.process)
        print(f"--- ipbx (exit {code}) log tail:\n{server.log_tail(80)}")
    [blocked] = [r for r in records if r.caller == BLACKLISTED]
    assert (blocked.result, blocked.recording) == ("blocked", None)
    assert blocked.path.endswith("extension:1001,blacklist"), blocked.path
    # Each talking call was recorded, the caller's tone on the left and 1001's echo of
    # it on the right, whichever way it reached 1001.
    talked = {r.callee: r for r in records if r.caller != BLACKLISTED}
    assert sorted(talked) == sorted([DIRECT, GROUP, MENU, FORWARDED, RINGING, TRANSFERRED])
    assert talked[RINGING].path.endswith("pickup:1001"), talked[RINGING].path
    assert talked[TRANSFERRED].path.endswith("transfer:1001"), talked[TRANSFERRED].path
    for did, record in talked.items():
        assert record.result == "answered", (did, record.path)
        assert record.recording is not None, (did, record.path)
        wav = server.data_dir / "recordings" / record.recording
        # 1001's ipbx phone sends nothing: on a pickup, only the caller's side has a tone.
        for channel in (0,) if did == RINGING else (0, 1):
            heard = analyse(wav, channel)
            assert heard.seconds > TALK_SECONDS / 2, (did, record.path, heard)
            assert abs(heard.dominant_hz - TONE_HZ) < 20, (did, record.path, channel, heard)
