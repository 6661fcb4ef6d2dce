"""Calls from the phone network with real peers: SIPp plays the provider's gateway of an
IP trunk (trusted by its address) and dials ipbx's DIDs as tests/interop/scenarios/
uac_did_caller.xml does, one call after the other, a tone in its RTP; the extensions'
phones are SIPp UASs that registered (`phone`)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.ports import LOOPBACK, free_port
from tests.support.processes import REPO_ROOT
from tests.support.server import Extension, IpbxServer
from tests.support.sipp import (
    SippProcess,
    SippResult,
    register_contact,
    start_sipp,
    write_rtp_pcap,
)

SCENARIO = REPO_ROOT / "tests" / "interop" / "scenarios" / "uac_did_caller.xml"
PSTN_CALLER = "+12125550199"
CALLER_NAME = "PSTN caller"  # the From's display name in the scenario
TRUNK = "provider"
TONE_HZ = 1000.0
NO_KEY = "-"


@dataclass(frozen=True)
class DidCall:
    """One call of the gateway: from `caller` to `did`, pressing `key` after the answer."""

    did: str
    key: str = NO_KEY
    caller: str = PSTN_CALLER


def ip_trunk(config: dict[str, Any], gateway_port: int) -> None:
    """Add the trunk whose gateway SIPp plays from `gateway_port`. Qualify is slowed
    down: the UAS would count each OPTIONS as a call."""
    peer = f"{LOOPBACK}:{gateway_port}"
    config["country"] = "US"
    config["sip"]["qualify_interval"] = 3600
    config["trunks"] = [{"name": TRUNK, "host": peer, "allow_from": [peer], "options_interval": 0}]


@dataclass(frozen=True)
class Placed:
    """What the gateway saw: SIPp's totals, and the calls refused with 603 as
    `CALLER to DID: 603` lines."""

    result: SippResult
    declined: list[str]


def start_dialling(
    server: IpbxServer, gateway_port: int, workdir: Path, calls: Sequence[DidCall], seconds: float
) -> SippProcess:
    """Start placing `calls` one after the other from the gateway, each hung up `seconds`
    after its answer (after the key, if one is pressed) while it plays the tone."""
    workdir.mkdir(parents=True, exist_ok=True)
    write_rtp_pcap(workdir / "tone.pcap", TONE_HZ, seconds + 1)
    rows = workdir / "calls.csv"
    rows.write_text("SEQUENTIAL\n" + "".join(f"{c.caller};{c.did};{c.key}\n" for c in calls))
    return start_sipp(
        SCENARIO, f"{LOOPBACK}:{server.port}", "-inf", str(rows), "-d", str(int(seconds * 1000)),
        "-l", "1", "-trace_logs", "-log_file", str(workdir / "declined.log"),
        calls=len(calls), workdir=workdir, local_port=gateway_port,
        timeout=len(calls) * (seconds + 5), name="gateway",
    )  # fmt: skip


def dialled(gateway: SippProcess) -> Placed:
    """The gateway's calls, once it has placed them all."""
    result = gateway.finish()
    declined = gateway.workdir / "declined.log"
    lines = declined.read_text().splitlines() if declined.exists() else []
    return Placed(result, [line.strip() for line in lines if line.strip()])


def dial(
    server: IpbxServer, gateway_port: int, workdir: Path, calls: Sequence[DidCall], seconds: float
) -> Placed:
    """Place `calls` as start_dialling does and wait for the last to end."""
    return dialled(start_dialling(server, gateway_port, workdir, calls, seconds))


@contextmanager
def phone(
    server: IpbxServer,
    workdir: Path,
    user: Extension,
    calls: int,
    scenario: str | Path = "uas",
    *args: str,
) -> Iterator[SippProcess]:
    """`user` registered and taking `calls` calls with SIPp's `scenario` (and `args`):
    `uas` answers and echoes the RTP, `uas_ring` rings until the call is cancelled.
    Every message it receives is in `NUMBER.messages.log`."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port("udp")
    registered = register_contact(server.port, user, port, workdir)
    assert registered.successful == 1, registered.errors()
    uas = start_sipp(
        scenario, None, *args, "-rtp_echo", "-trace_msg", "-message_file",
        str(workdir / f"{user.number}.messages.log"), calls=calls, workdir=workdir,
        local_port=port, timeout=60, name=user.number,
    )  # fmt: skip
    try:
        yield uas
    finally:
        uas.finish(timeout=5)


def invites_received(uas: SippProcess) -> list[str]:
    """The request lines of the INVITEs the UAS received."""
    path = uas.workdir / f"{uas.name}.messages.log"
    text = path.read_text(errors="replace") if path.exists() else ""
    return [line.strip() for line in text.splitlines() if line.startswith("INVITE sip:")]
