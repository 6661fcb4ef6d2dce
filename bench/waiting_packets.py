"""What waiting callers' packets cost the media engine alone, without SIP or call flows.

N media endpoints (media/endpoint.py) listen to one shared music on hold (a 60 s tone,
media/moh.py), as queue callers do, and a child process plays N phones: it sends each
endpoint 50 PCMU packets a second and reads the music back. The phones send either all
together every 20 ms (`--spread 0`) or spread evenly over the 20 ms (`--spread 1`), as
independent phones do. The figure is this process's CPU (user and system, /proc) over
--seconds, per waiting caller, as a percentage of one core; run it pinned to one core
(`taskset -c 1`). The difference between the two ways of sending is what a wakeup of
the event loop per packet costs.

    taskset -c 1 .venv/bin/python bench/waiting_packets.py --callers 200 --spread 1
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import wave
from pathlib import Path

import numpy as np
import uvloop

from ipbx.media.codecs import PCMU
from ipbx.media.endpoint import MediaEndpoint
from ipbx.media.moh import MusicOnHold
from ipbx.media.ports import PortPool

PHONES = """
import socket, struct, sys, time
ports, sinks = eval(sys.argv[1]), eval(sys.argv[2])
seconds, spread = float(sys.argv[3]), sys.argv[4] == "1"
socks = []
for port in sinks:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", port))
    s.setblocking(False)
    socks.append(s)
start, n = time.monotonic(), 0
while time.monotonic() - start < seconds:
    for i, port in enumerate(ports):
        header = struct.pack("!BBHII", 0x80, 0, n & 0xFFFF, (n * 160) & 0xFFFFFFFF, 1000 + i)
        socks[i].sendto(header + bytes(160), ("127.0.0.1", port))
        try:
            while True:
                socks[i].recv(2048)
        except BlockingIOError:
            pass
        if spread:
            due = start + n * 0.02 + 0.02 * (i + 1) / len(ports)
            time.sleep(max(0.0, due - time.monotonic()))
    n += 1
    time.sleep(max(0.0, start + n * 0.02 - time.monotonic()))
"""


def tone(folder: Path) -> None:
    rate = 16000
    samples = (8000 * np.sin(2 * np.pi * 440 * np.arange(rate * 60) / rate)).astype("<i2")
    with wave.open(str(folder / "tone.wav"), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(samples.tobytes())


def cpu_ticks() -> int:
    fields = Path(f"/proc/{os.getpid()}/stat").read_text().split()
    return int(fields[13]) + int(fields[14])


async def measure(callers: int, seconds: float, spread: bool, folder: Path) -> None:
    pool = PortPool("127.0.0.1", 30000, 30000 + 4 * callers + 2)
    sinks = list(range(40000, 40000 + 2 * callers, 2))
    endpoints = []
    for sink in sinks:
        endpoint = await MediaEndpoint.open(pool)
        endpoint.set_remote("127.0.0.1", sink, PCMU)
        endpoint.digits = None  # a queue without a callback key listens for no digit
        endpoints.append(endpoint)
    music = MusicOnHold(folder)
    for endpoint in endpoints:
        music.listen(endpoint)
    ports = [endpoint.local_address[1] for endpoint in endpoints]
    phones = subprocess.Popen(
        [sys.executable, "-c", PHONES, repr(ports), repr(sinks), str(seconds + 3), str(int(spread))]
    )
    try:
        await asyncio.sleep(2)
        before = cpu_ticks()
        await asyncio.sleep(seconds)
        used = (cpu_ticks() - before) / os.sysconf("SC_CLK_TCK") / seconds * 100
    finally:
        phones.wait()
    received = sum(e.meter.reading().packets_received for e in endpoints) / callers
    print(
        f"{callers} waiting, phones {'spread' if spread else 'together'}: {used:.1f} % of a"
        f" core, {used / callers:.4f} % per caller; {received / (seconds + 2):.0f} packets/s"
        " received from each"
    )
    for endpoint in endpoints:
        endpoint.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--callers", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--spread", type=int, choices=(0, 1), default=1)
    args = parser.parse_args()
    uvloop.install()
    with tempfile.TemporaryDirectory() as folder:
        tone(Path(folder))
        asyncio.run(measure(args.callers, args.seconds, bool(args.spread), Path(folder)))


if __name__ == "__main__":
    main()
