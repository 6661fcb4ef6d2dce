"""The part `conference`: rooms of members from our load tool (bench/rtpload.py, mode
conference: SIP calls into a room, G.711 with telephone-event, some members talking and
the others sending a quiet line's noise), ipbx only:

  conference_members        the largest single room on one core whose members all get
                            their mix with loss < 0.1 % and added jitter p99 < 5 ms, with
                            3 members talking at any time and the rest silent; with the
                            server's CPU per member (goal: >= 500 members in one room);
  conference_small_rooms    the most members in rooms of 4 (1 talking in each) within the
                            same limits, and the CPU per member.

No peer is measured beside it: none of the servers this machine runs mixes audio
(Kamailio carries no media, rtpengine relays and transcodes but has no conference).
Small: `--parts conference --servers ipbx --conference-members 20,40
--conference-small-rooms 20,40 --media-seconds 3`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bench import media
from bench.parts.rtp import prioritise, threads_of
from bench.parts.session import Settings, emit, log
from tests.support.processes import ServerNotReady
from tests.support.server import extension_range, start_configured_ipbx

# Room i answers at number FIRST_ROOM + i (rtpload.py --number, --room-size).
FIRST_ROOM = 8000
SMALL_ROOM = 4
BIG_ROOM_TALKERS = 3


def rooms_ramp(
    name: str, steps: Sequence[int], room_size: int, talkers: int, settings: Settings
) -> media.MediaOutcome | None:
    """One ipbx with enough rooms for the largest step, the ramp, then stop it; None if
    it did not start."""
    workdir = settings.out / "conference" / name
    rooms = 1 if room_size == 0 else -(-max(steps) // room_size)

    def edit(config: dict[str, Any]) -> None:
        # No join tones: a room filling with hundreds of members would hear nothing else.
        config["conferences"] = [{"name": f"room{i}", "announce_join": False} for i in range(rooms)]
        config.setdefault("numbers", []).extend(
            {"number": str(FIRST_ROOM + i), "destination": f"conference:room{i}"}
            for i in range(rooms)
        )

    try:
        # Two ports (RTP, RTCP) a member, and room to spare.
        server = start_configured_ipbx(
            workdir / "server", edit, extensions=extension_range(2),
            cpu=settings.server_cpu, rtp_ports=2 * max(steps) + 200,
        )  # fmt: skip
    except (ServerNotReady, OSError) as error:
        log(f"{name}: ipbx not started: {str(error).splitlines()[0]}")
        return None
    log(f"{name}: pid {server.pid}, {rooms} room(s)")
    prioritise(threads_of(server.pid))
    target = ["--server", "ipbx", "--sip-port", str(server.port), "--server-pid", str(server.pid)]
    target += ["--number", str(FIRST_ROOM), "--room-size", str(room_size)]
    target += ["--talkers", str(talkers)]

    def step(members: int) -> media.MediaStep:
        return media.run_load(
            target, members, settings.media_seconds, "conference", settings.sipp_cpu, workdir
        )

    try:
        return media.ramp(steps, step, log, cores=(settings.sipp_cpu, settings.server_cpu))
    finally:
        log(f"{name}: stopped (exit {server.stop()}); log {server.log_path}")


def bench_conference(settings: Settings) -> bool:
    """conference_members (one room) and conference_small_rooms, with CPU per member."""
    complete = True
    for name, steps, room_size, talkers in (
        ("conference_members", settings.conference_members, 0, BIG_ROOM_TALKERS),
        ("conference_small_rooms", settings.conference_small_rooms, SMALL_ROOM, 1),
    ):
        outcome = rooms_ramp(name, steps, room_size, talkers, settings)
        if outcome is None:
            emit({"figure": name, "server": "ipbx", "value": None, "error": "not started"})
            complete = False
            continue
        extra: dict[str, object] = {
            "room_size": room_size or "all",
            "talking_per_room": talkers,
            "codec": "PCMU/20ms + telephone-event",
        }
        if outcome.best is not None:
            per_member = outcome.best.number("server_cpu_pct") / outcome.best.calls
            extra["cpu_pct_per_member"] = round(per_member, 4)
        emit(media.figure(name, "ipbx", outcome, **extra))
        complete &= outcome.best is not None
    return complete
