"""Callers waiting in a queue: CPU per waiting caller on the shared music on hold.

    python bench/waiting.py --callers 200 --seconds 30
    python bench/waiting.py --callers 200 --seconds 30 --unshared   # music per caller

A waiting room process (this file with --room, pinned to one core) opens one media
endpoint per caller and runs the queue's WaitingRoom (pbx/queue/waiting.py) on each,
as the queue engine does: the folder's music, the position announcement every
--announce-seconds and the periodic announcement every --periodic-seconds, spoken by
text-to-speech. Callers join over --join-seconds, so their announcements do not all
fall on the same tick; the window is measured once every caller has heard each
announcement (the prompts are synthesised and encoded, as in a server that has run a
while). The callers' phones are plain UDP sockets in this process, pinned to the other
core: they only count what arrives.

With --unshared every caller gets a music source of its own (its own decoding, resampling
and encoder: about what playing the folder on each endpoint cost), for comparison.

Figures, one JSON line on stdout:
  cpu_pct_per_caller   the room's CPU (its process, /proc/PID/stat) over the measured
                       window, in % of one core, divided by the callers (goal < 0.1 %:
                       1,000 waiting callers a core);
  room_cpu_pct, callers_per_core (at that cost), us_per_packet (room CPU per RTP packet
                       sent);
  delivered_pct        packets received by the phones over 50 a second per caller: below
                       100 % by the short gaps between the music and an announcement
                       (the prompt file is opened), far below when the room falls behind
                       (the media clock skips the ticks a stalled process missed);
  phone_drops          datagrams the phones' kernel buffers dropped (the receiving side
                       fell behind, not the room);
  idle_cpu_pct         the room's CPU before any caller joined, for reference.
Every loop is bounded: the room exits when its stdin closes, the phones read for the
window only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import selectors
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import cast

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tests.support.processes import cpu_seconds, pinned, udp_drops  # noqa: E402

PACKETS_PER_SECOND = 50  # 20 ms packets
MUSIC_SECONDS = 20
ROOM_CPU, PHONES_CPU = 0, 1


@dataclass(frozen=True)
class WaitingLoad:
    callers: int = 200
    seconds: float = 30.0  # the measured window
    join_seconds: float = 5.0
    announce_seconds: float = 15.0
    periodic_seconds: float = 20.0
    codecs: tuple[str, ...] = ("pcmu",)  # assigned to the callers in turn
    unshared: bool = False


class Phones:
    """`count` RTP receivers on loopback (each with its RTCP port), counting packets."""

    def __init__(self, count: int) -> None:
        self.sockets: list[socket.socket] = []
        self.received = [0] * count
        self._selector = selectors.DefaultSelector()
        port = random.randrange(20000, 29000, 2)
        while len(self.sockets) < 2 * count:
            pair = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2)]
            try:
                for offset, sock in enumerate(pair):
                    sock.bind(("127.0.0.1", port + offset))
            except OSError:
                for sock in pair:
                    sock.close()
            else:
                self.sockets += pair
            port += 2
        for index, sock in enumerate(self.sockets):
            sock.setblocking(False)
            self._selector.register(sock, selectors.EVENT_READ, index)

    @property
    def rtp_ports(self) -> list[int]:
        return [sock.getsockname()[1] for sock in self.sockets[::2]]

    def read(self, seconds: float) -> None:
        """Read (and count RTP) for `seconds`."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            for key, _ in self._selector.select(min(left, 0.1)):
                sock = cast(socket.socket, key.fileobj)
                while True:
                    try:
                        sock.recv(2048)
                    except BlockingIOError:
                        break
                    if key.data % 2 == 0:
                        self.received[key.data // 2] += 1

    def close(self) -> None:
        self._selector.close()
        for sock in self.sockets:
            sock.close()


def measure_waiting(load: WaitingLoad, out: Path) -> dict[str, object]:
    """Run the waiting room against phones in this process; the figures (module doc)."""
    out.mkdir(parents=True, exist_ok=True)
    phones = Phones(load.callers)
    os.sched_setaffinity(0, {PHONES_CPU})
    command = [sys.executable, str(Path(__file__).resolve()), "--room", json.dumps(asdict(load)),
               "--out", str(out), "--ports", ",".join(map(str, phones.rtp_ports))]  # fmt: skip
    with (out / "room.log").open("wb") as log:
        room = subprocess.Popen(
            pinned(command, ROOM_CPU), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log
        )
    try:
        assert room.stdout is not None and room.stdin is not None
        if room.stdout.readline().strip() != b"ready":
            raise RuntimeError(f"the waiting room did not start: see {out / 'room.log'}")
        idle = _busy(room.pid, 1.0)
        room.stdin.write(b"go\n")
        room.stdin.flush()
        # Every caller has joined and heard each announcement once: the prompts are
        # encoded, as in a server that has run a while.
        phones.read(load.join_seconds + max(load.announce_seconds, load.periodic_seconds) + 5)
        before, started = cpu_seconds(room.pid), time.monotonic()
        received, drops = sum(phones.received), udp_drops(phones.rtp_ports)
        phones.read(load.seconds)
        busy = (cpu_seconds(room.pid) - before) / (time.monotonic() - started)
        received = sum(phones.received) - received
        drops = udp_drops(phones.rtp_ports) - drops
        room.stdin.close()
        room.wait(10)
    finally:
        if room.poll() is None:
            room.kill()
            room.wait()
        phones.close()
    sent = load.callers * PACKETS_PER_SECOND * load.seconds
    return {
        "figure": "waiting_callers",
        **asdict(load),
        "cpu_pct_per_caller": round(100 * busy / load.callers, 4),
        "room_cpu_pct": round(100 * busy, 2),
        "callers_per_core": int(load.callers / busy) if busy else None,
        "us_per_packet": round(1e6 * busy * load.seconds / max(received, 1), 2),
        "delivered_pct": round(100 * received / sent, 2),
        "phone_drops": drops,
        "idle_cpu_pct": round(100 * idle, 3),
    }


def _busy(pid: int, seconds: float) -> float:
    """The share of a core process `pid` uses over the next `seconds`."""
    before, started = cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    return (cpu_seconds(pid) - before) / (time.monotonic() - started)


# --- the waiting room (the process measured) -------------------------------------------


async def _room(load: WaitingLoad, out: Path, ports: Sequence[int]) -> None:
    """Open the callers' endpoints, say "ready", and on "go" let them join the queue;
    run until stdin closes."""
    from ipbx.media.codecs import G722, OPUS, PCMA, PCMU, create_decoder
    from ipbx.media.endpoint import MediaEndpoint
    from ipbx.media.moh import MusicOnHold
    from ipbx.media.ports import PortPool
    from ipbx.media.tts import synthesize
    from ipbx.pbx.call.engine import Calls
    from ipbx.pbx.call.model import Call, Leg
    from ipbx.pbx.queue.waiting import WaitingRoom, position_announcement
    from ipbx.pbx.session import Prompts, Session
    from ipbx.sip.transaction import Address
    from tests.support.invites import invite
    from tests.support.softphone import write_tone

    codecs = {c.name.lower(): c for c in (PCMU, PCMA, G722, OPUS)}
    folder = out / "moh"
    folder.mkdir(exist_ok=True)
    write_tone(folder / "music.wav", 440, MUSIC_SECONDS, rate=16000)
    prompts = Prompts(out / "prompts")
    periodic = "Thank you for waiting. Your call is important to us."
    places = [_Place(n + 1) for n in range(len(ports))]
    texts = {periodic}.union(
        *(position_announcement(p.position(), p.estimated_wait()) for p in places)
    )
    rates = {create_decoder(codecs[name]).pcm_rate for name in load.codecs}
    speaking = [(text, rate) for text in texts for rate in rates]
    await asyncio.gather(*(asyncio.to_thread(synthesize, text, prompts.cache_dir, prompts.voice,
                                             160, rate) for text, rate in speaking))  # fmt: skip
    first = random.randrange(30000, 39000, 2)
    pool = PortPool("127.0.0.1", first, first + 2 * len(ports) + 200)
    shared = MusicOnHold(folder)
    sessions = []
    for index, port in enumerate(ports):
        media = await MediaEndpoint.open(pool)
        media.set_remote("127.0.0.1", port, codecs[load.codecs[index % len(load.codecs)]])
        call = Call(id=f"waiting{index}", from_number=f"55501{index:04d}")
        leg = Leg(call, Address("UDP", "127.0.0.1", port), media, invite())
        # Answered already: the waiting room never calls back into `calls`.
        sessions.append(Session(cast(Calls, None), call, leg, prompts, answered=True))
    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    print("ready", flush=True)
    await stdin.readline()

    async def caller(index: int, session: Session) -> None:
        await asyncio.sleep(load.join_seconds * index / len(sessions))
        room = WaitingRoom(
            MusicOnHold(folder) if load.unshared else shared,
            announce_position_seconds=load.announce_seconds,
            periodic_announcement=periodic,
            periodic_announcement_seconds=load.periodic_seconds,
        )
        await room.wait(session, places[index])

    tasks = [asyncio.ensure_future(caller(i, s)) for i, s in enumerate(sessions)]
    await stdin.readline()  # EOF: the measurement is over
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for session in sessions:
        session.leg.media.close()


class _Place:
    """A caller's place that does not move (no agent answers during the measurement)."""

    def __init__(self, position: int) -> None:
        self._position = position

    def position(self) -> int:
        return self._position

    def estimated_wait(self) -> float | None:
        return 20.0 * self._position


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--callers", type=int, default=WaitingLoad.callers)
    parser.add_argument("--seconds", type=float, default=WaitingLoad.seconds)
    parser.add_argument("--join-seconds", type=float, default=WaitingLoad.join_seconds)
    parser.add_argument("--announce-seconds", type=float, default=WaitingLoad.announce_seconds)
    parser.add_argument("--periodic-seconds", type=float, default=WaitingLoad.periodic_seconds)
    parser.add_argument("--codecs", default=",".join(WaitingLoad.codecs),
                        help="PCMU, PCMA, G722, opus: given to the callers in turn")  # fmt: skip
    parser.add_argument("--unshared", action="store_true", help="music per caller")
    parser.add_argument("--out", type=Path, default=Path("/tmp/ipbx-bench-waiting"))
    parser.add_argument("--room", help=argparse.SUPPRESS)
    parser.add_argument("--ports", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.room is not None:
        settings = json.loads(args.room)
        load = WaitingLoad(**{**settings, "codecs": tuple(settings["codecs"])})
        import uvloop

        uvloop.run(_room(load, args.out, [int(p) for p in args.ports.split(",")]))
        return 0
    load = WaitingLoad(
        callers=args.callers,
        seconds=args.seconds,
        join_seconds=args.join_seconds,
        announce_seconds=args.announce_seconds,
        periodic_seconds=args.periodic_seconds,
        codecs=tuple(c.strip().lower() for c in args.codecs.split(",")),
        unshared=args.unshared,
    )
    print(json.dumps(measure_waiting(load, args.out)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
