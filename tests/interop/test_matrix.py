"""The interop matrix: every real peer calls every other through one ipbx.

Each peer registers once for the run (`ipbx phone`, a process per call, registers for
each call it answers; SIPp only places calls, with digest authentication); each cell is
one call from the caller to the callee, and checks, where the two peers can do it:
- registration (the peers registered at start) and the call answered;
- audio both ways: each side hears the other's tone (every peer sends its own
  frequency, so a tone heard is the right one);
- RFC 4733 DTMF: the caller presses 1 5 # (the callee when the caller cannot send
  DTMF) and the other side reports the same digits;
- hold and resume: the caller holds (the callee when the caller cannot); ipbx answers
  the hold itself and plays its music on hold (a 400 Hz tone here) to the held side,
  which hears the music, then the other's tone again once resumed. An SRTP leg's hold
  is passed through end to end (its keys stay between the phones), so there the held
  side hears the other's tone again after the hold;
- hang-up: one side hangs up and the other sees the call end. Which side alternates
  over the matrix, so a peer that can hang up does it as caller and as callee.

What a peer cannot do is in CANNOT with the reason, read in the peer's source or
documentation; such a step is left out of a cell and listed in docs/interop.md, and a
cell a peer cannot take part in at all (pyVoIP cannot place a call through ipbx) is not
a test: it is listed there with its reason.

Each run writes build/interop-matrix.json (or $IPBX_INTEROP_RESULTS);
scripts/interop_table.py turns it into docs/interop.md, and test_interop_doc.py checks
that the page lists the cells this module has.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.interop.matrix_peers import (
    DIGITS,
    BaresipPeer,
    IpbxPhonePeer,
    LinphonePeer,
    MatrixPeer,
    Outcome,
    Plan,
    PyVoipPeer,
)
from tests.interop.matrix_sipp import SippCallerPeer
from tests.support.processes import REPO_ROOT
from tests.support.server import IpbxServer, extension_range, start_configured_ipbx
from tests.support.softphone import timeline, write_tone

USERS = iter(extension_range(9))
PEERS: list[MatrixPeer] = [
    BaresipPeer("baresip-pcmu", "baresip PCMU", next(USERS), 500, "PCMU"),
    BaresipPeer("baresip-pcma", "baresip PCMA", next(USERS), 600, "PCMA"),
    BaresipPeer("baresip-g722", "baresip G.722", next(USERS), 700, "G722/16000/1", rate=16000),
    BaresipPeer(
        "baresip-opus", "baresip Opus", next(USERS), 800, "opus/48000/2", rate=48000, channels=2
    ),
    BaresipPeer(
        "baresip-srtp",
        "baresip PCMU, SDES-SRTP",
        next(USERS),
        900,
        "PCMU",
        media_encryption="srtp-mand",
    ),
    LinphonePeer("linphone", "Linphone (linphonec)", next(USERS), 1000),
    IpbxPhonePeer("ipbx-phone", "ipbx phone", next(USERS), 1200),
    PyVoipPeer("pyvoip", "pyVoIP", next(USERS), 1300),
    SippCallerPeer("sipp", "SIPp (RTP from pcap)", next(USERS), 1100),
]
BY_KEY = {peer.key: peer for peer in PEERS}

# What a peer cannot do, and why. Abilities: "call" (place a call), "answer", "hear" (record what
# it receives), "hear_held" (what it hears of a hold: music, then the other side),
# "send_dtmf", "hear_dtmf" (report RFC 4733 digits), "hold", "hang_up".
SIPP_DEAF = "SIPp replays RTP from pcaps; it neither decodes nor records what it receives"
CANNOT: dict[str, dict[str, str]] = {
    "sipp": {
        "answer": "the matrix has no SIPp scenario that answers a call yet",
        "hear": SIPP_DEAF,
        "hear_dtmf": SIPP_DEAF,
        "hear_held": SIPP_DEAF,
    },
    "pyvoip": {
        "call": (
            "pyVoIP 1.6.8 answers only a 401 challenge to its INVITE (SIP.py, invite); "
            "ipbx challenges INVITE with 407 as RFC 3261 §22.3 has proxies do, and "
            "pyVoIP drops it"
        ),
        "send_dtmf": "pyVoIP 1.6.8 has no call to send DTMF (it only reads RFC 4733 events)",
        "hold": "pyVoIP 1.6.8 has no call to send a re-INVITE (it only answers one)",
        "hear_held": (
            "pyVoIP 1.6.8 files received audio by RTP timestamp alone, whatever the SSRC "
            "(RTP.py, RTPPacketManager): ipbx's music on hold, a stream with timestamps of "
            "its own, comes out as silence, and what follows the hold is misplaced"
        ),
        "hang_up": (
            "pyVoIP 1.6.8's BYE for a call it answered carries the INVITE's Via, the "
            "PBX's own, instead of one of its own (SIP.py, gen_bye), and ipbx ignores it"
        ),
    },
}


# Cells not run, for what one of its peers does wrong with the other.
PAIRS_CANNOT: dict[tuple[str, str], str] = {
    ("baresip-pcma", "pyvoip"): (
        "ipbx offers pyVoIP the caller's PCMA first, and pyVoIP 1.6.8 sends PCMA "
        "payloads made by its PCMU encoder (RTP.py, encode_packet)"
    ),
}

MOH_HZ = 400
TOLERANCE_HZ = 20
# 100 ms slices of a recording: this many at a frequency make a tone heard. Linphone
# stops recording when it holds, and pyVoIP answers a second after it rings, so
# Linphone calling pyVoIP records under a second of the call.
HEARD_SLICES = 3
HELD_SLICES = 3


def can(peer: str, ability: str) -> bool:
    return ability not in CANNOT.get(peer, {})


def reason(peer: str, ability: str) -> str:
    return CANNOT[peer][ability]


@dataclass(frozen=True)
class Cell:
    """One call of the matrix: who sends DTMF, who holds and who hangs up ("caller",
    "callee" or None when neither can), and the steps left out with their reasons."""

    caller: str
    callee: str
    dtmf_from: str | None
    hold_by: str | None
    hang_up_by: str
    left_out: tuple[tuple[str, str], ...]

    @property
    def id(self) -> str:
        return f"{self.caller}_to_{self.callee}"

    def peer(self, side: str) -> str:
        return self.caller if side == "caller" else self.callee


def plan_cell(caller: str, callee: str, index: int) -> Cell:
    """The steps of one cell, from what both peers can do."""
    peers = {"caller": caller, "callee": callee}
    other = {"caller": "callee", "callee": "caller"}
    left_out: list[tuple[str, str]] = []
    for side in ("callee", "caller"):
        if not can(peers[side], "hear"):
            left_out.append((f"audio to {side}", reason(peers[side], "hear")))
    dtmf_from = next(
        (
            side
            for side in ("caller", "callee")
            if can(peers[side], "send_dtmf") and can(peers[other[side]], "hear_dtmf")
        ),
        None,
    )
    if dtmf_from is None:
        reasons = [
            reason(peers[side], ability)
            for side, ability in (("caller", "send_dtmf"), ("callee", "hear_dtmf"))
            if not can(peers[side], ability)
        ]
        left_out.append(("DTMF", "; ".join(reasons)))
    hold_by = next((side for side in ("caller", "callee") if can(peers[side], "hold")), None)
    if hold_by is None:
        left_out.append(("hold", reason(caller, "hold")))
    elif not can(peers[other[hold_by]], "hear_held"):
        held = other[hold_by]
        left_out.append((f"what the {held} hears of the hold", reason(peers[held], "hear_held")))
    # Alternate the side that hangs up, so each peer does both over the matrix.
    wanted = "caller" if index % 2 == 0 else "callee"
    hang_up_by = wanted if can(peers[wanted], "hang_up") else other[wanted]
    return Cell(caller, callee, dtmf_from, hold_by, hang_up_by, tuple(left_out))


# baresip against baresip is run through its PCMU profile only, to keep the matrix
# within its few minutes of CI: the codec profiles each meet every other peer.
BARESIP_PAIRS = "baresip profiles meet each other through baresip PCMU only"


def matrix_cells() -> tuple[list[Cell], list[tuple[str, str, str]]]:
    """The cells the matrix runs, and those it does not: (caller, callee, reason)."""
    cells: list[Cell] = []
    cannot: list[tuple[str, str, str]] = []
    for i, caller in enumerate(PEERS):
        for j, callee in enumerate(PEERS):
            if caller is callee:
                continue
            pair = {caller.key, callee.key}
            if all(key.startswith("baresip") for key in pair) and "baresip-pcmu" not in pair:
                cannot.append((caller.key, callee.key, BARESIP_PAIRS))
            elif (caller.key, callee.key) in PAIRS_CANNOT:
                cannot.append((caller.key, callee.key, PAIRS_CANNOT[caller.key, callee.key]))
            elif not can(caller.key, "call"):
                cannot.append((caller.key, callee.key, reason(caller.key, "call")))
            elif not can(callee.key, "answer"):
                cannot.append((caller.key, callee.key, reason(callee.key, "answer")))
            else:
                cells.append(plan_cell(caller.key, callee.key, i + j))
    return cells, cannot


CELLS, CANNOT_CELLS = matrix_cells()


def results_path() -> Path:
    return Path(os.environ.get("IPBX_INTEROP_RESULTS", REPO_ROOT / "build" / "interop-matrix.json"))


class Results:
    """The matrix's results as scripts/interop_table.py reads them, rewritten after each
    cell so that an interrupted run leaves what it did."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.peers = [{"key": peer.key, "label": peer.label} for peer in PEERS]
        self.cells: dict[str, dict[str, object]] = {
            cell.id: {**asdict(cell), "result": "not run", "problems": []} for cell in CELLS
        }
        self.cannot = [
            {"caller": caller, "callee": callee, "reason": why}
            for caller, callee, why in CANNOT_CELLS
        ]
        self.write()

    def record(self, cell: Cell, result: str, problems: list[str]) -> None:
        self.cells[cell.id].update(result=result, problems=problems)
        self.write()

    def write(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        document = {"peers": self.peers, "cells": list(self.cells.values()), "cannot": self.cannot}
        self.path.write_text(json.dumps(document, indent=1) + "\n")


@dataclass
class Matrix:
    server: IpbxServer
    results: Results


@pytest.fixture(scope="module")
def matrix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Matrix]:
    """One ipbx for the whole matrix, with music on hold, and every peer registered."""
    workdir = tmp_path_factory.mktemp("matrix")
    (workdir / "ipbx" / "data" / "moh").mkdir(parents=True)
    write_tone(workdir / "ipbx" / "data" / "moh" / "hold.wav", MOH_HZ, 10)
    server = start_configured_ipbx(
        workdir / "ipbx", _configure, extensions=[peer.user for peer in PEERS]
    )
    started: list[MatrixPeer] = []
    try:
        for peer in PEERS:
            peer.start(server, workdir)
            started.append(peer)
        yield Matrix(server, Results(results_path()))
    finally:
        for peer in started:
            peer.stop()
        server.stop()


def _configure(config: dict[str, Any]) -> None:
    # pyVoIP answers no OPTIONS (SIP.py, parse_message), so ipbx's qualify would take it
    # for gone 30 s after it registered and stop sending it calls; the matrix runs
    # longer than that.
    config["sip"]["qualify_interval"] = 3600
    # baresip with mediaenc=srtp-mand refuses plain RTP: ipbx offers it SRTP on UDP.
    srtp = BY_KEY["baresip-srtp"].user.number
    for extension in config["extensions"]:
        if extension["number"] == srtp:
            extension["srtp"] = "required"


def _heard(outcome: Outcome, hz: float) -> list[bool]:
    assert outcome.recording is not None
    return [f is not None and abs(f - hz) <= TOLERANCE_HZ for f in timeline(outcome.recording)]


def check_cell(cell: Cell, outcomes: dict[str, Outcome], server_log: str) -> list[str]:
    """Every step of the cell that went wrong, in words."""
    problems: list[str] = []
    peers = {side: BY_KEY[cell.peer(side)] for side in ("caller", "callee")}
    other = {"caller": "callee", "callee": "caller"}
    for side, outcome in outcomes.items():
        if not outcome.answered:
            problems.append(f"the {side} never saw the call answered")
    if problems:
        return problems
    for side in ("caller", "callee"):
        if not can(peers[side].key, "hear"):
            continue
        outcome = outcomes[side]
        sender = peers[other[side]]
        if outcome.recording is None:
            problems.append(f"the {side} recorded nothing")
        elif sum(_heard(outcome, sender.tone_hz)) < HEARD_SLICES:
            problems.append(f"the {side} did not hear {sender.tone_hz} Hz")
    if cell.dtmf_from is not None:
        receiver = other[cell.dtmf_from]
        digits = outcomes[receiver].digits
        if digits != DIGITS:
            problems.append(f"the {receiver} received DTMF {digits!r}, not {DIGITS!r}")
    if cell.hold_by is not None:
        problems += _check_hold(cell, outcomes, server_log)
    hung_up_on = other[cell.hang_up_by]
    if not outcomes[hung_up_on].ended_by_peer:
        problems.append(f"the {hung_up_on} did not see the {cell.hang_up_by} hang up")
    return problems


def _check_hold(cell: Cell, outcomes: dict[str, Outcome], server_log: str) -> list[str]:
    assert cell.hold_by is not None
    held = "callee" if cell.hold_by == "caller" else "caller"
    holder = BY_KEY[cell.peer(cell.hold_by)]
    held_peer = BY_KEY[cell.peer(held)]
    # An SRTP leg's hold is passed through end to end, so there is no music then.
    with_music = "srtp" not in cell.caller + cell.callee
    problems: list[str] = []
    if with_music and ("holds; music to" not in server_log or "resumes" not in server_log):
        problems.append(f"ipbx did not see the {cell.hold_by} hold and resume")
    if not can(held_peer.key, "hear_held") or outcomes[held].recording is None:
        return problems
    heard_other = _heard(outcomes[held], holder.tone_hz)
    if with_music:
        music = _heard(outcomes[held], MOH_HZ)
        if sum(music) < HELD_SLICES:
            problems.append(f"the {held} did not hear the music on hold")
        else:
            last_music = len(music) - 1 - music[::-1].index(True)
            if sum(heard_other[last_music:]) < HELD_SLICES:
                problems.append(f"the {held} did not hear the {cell.hold_by} after the hold")
    elif sum(heard_other[-10:]) < HELD_SLICES:
        problems.append(f"the {held} did not hear the {cell.hold_by} after the hold")
    return problems


def record(results: Results, cell: Cell, problems: list[str]) -> None:
    results.record(cell, "failed" if problems else "passed", problems)


@pytest.mark.parametrize("cell", [pytest.param(cell, id=cell.id) for cell in CELLS])
def test_call(cell: Cell, matrix: Matrix) -> None:
    caller, callee = BY_KEY[cell.caller], BY_KEY[cell.callee]
    log_offset = len(matrix.server.log_path.read_text(errors="replace"))

    def plan(side: str) -> Plan:
        return Plan(
            call=callee.user.number if side == "caller" else None,
            send_dtmf=cell.dtmf_from == side,
            hold=cell.hold_by == side,
            hang_up=cell.hang_up_by == side,
        )

    try:
        callee.begin(plan("callee"))
        caller.begin(plan("caller"))
        with ThreadPoolExecutor(2) as pool:
            finishing = {"caller": pool.submit(caller.finish), "callee": pool.submit(callee.finish)}
            outcomes = {side: future.result() for side, future in finishing.items()}
    except Exception as exc:
        record(matrix.results, cell, [f"{type(exc).__name__}: {exc}".splitlines()[0]])
        raise
    finally:
        caller.reset()
        callee.reset()
    server_log = matrix.server.log_path.read_text(errors="replace")[log_offset:]
    problems = check_cell(cell, outcomes, server_log)
    record(matrix.results, cell, problems)
    logs = "\n".join(f"--- {side}:\n{o.log[-3000:]}" for side, o in outcomes.items())
    assert not problems, f"{problems}\n{logs}\n--- ipbx:\n{server_log[-4000:]}"
