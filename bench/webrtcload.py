"""WebRTC load through ipbx: N browser tabs call a G.711 phone, 20 ms audio both ways.

    python bench/webrtcload.py --sip-port P --wss-port W --server-pid PID --calls 100
    python bench/webrtcload.py ... --mode transcode --calls 10

The browsers: N tabs (bench/browsers.py), each on its own wss:// connection, signed in
as its own extension (the first is --first-browser), each calling the phone --callee
with a browser's offer (bench/webrtcpeer.py: UDP/TLS/RTP/SAVPF, BUNDLE, rtcp-mux, ICE
credentials, a=fingerprint, a=setup:actpass) in one codec: PCMU (--mode relay) or Opus
(--mode transcode). Once a tab has
ipbx's answer, its transport runs the ICE connectivity check and the DTLS handshake and
keys its SRTP; the call counts once that is done and the phone has its leg.
The phone: bench/sipua.py's callee, registered over UDP, answering PCMU on plain RTP.
So ipbx relays PCMU between SRTP and RTP, decrypting and encrypting, or transcodes Opus
in SRTP to PCMU in RTP and back.

Then bench/rtpload.py's send loop runs every call, the same as for the relay figures:
a single-threaded loop, no asyncio, that sends each stream's packet at its 20 ms tick
and reads what ipbx delivers with the kernel's receive time. The browsers' packets are
protected with libsrtp (pylibsrtp, about 2 µs a packet here) on the way out, and what
reaches them is authenticated and decrypted the same way; the phone's are plain RTP.
All browsers share one UDP socket and the phone another: ipbx anchors every leg on its
own port, so the port a packet comes from names its call. This keeps the generator lean
(one process, one core, C for the cryptography): aiortc, a full browser stack in Python,
would cost its core several times more per call than ipbx's side of it does.

One JSON line on stdout, rtpload's figures (loss and jitter p99 by direction: forward is
what the phone receives, backward what the browsers receive; a transcoded call is timed
against its 20 ms grid, as rtpload does in transcode mode) and: setup_s, setup_failed,
teardown_failed, srtp_failures (browser packets that failed authentication), control
(STUN, DTLS or RTCP datagrams read during the run).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pylibsrtp
from websockets.exceptions import WebSocketException

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from bench.browsers import BrowserTab  # noqa: E402
from bench.rtpload import Media, Stream, opus, pcmu, rtp_socket, run_streams  # noqa: E402
from bench.sipua import SipFailure, UserAgents  # noqa: E402
from bench.webrtcpeer import Address, SrtpSessions, WebRtcFailure, WebRtcPeer  # noqa: E402

LOOPBACK = "127.0.0.1"
SETUP_CONCURRENCY = 16
# a=fmtp of the Opus a browser offers (Chrome's: 10 ms minimum ptime, in-band FEC).
OPUS_FMTP = "minptime=10;useinbandfec=1"


@dataclass
class BrowserCall:
    """One browser's call: its tab, its transport, its keys and the ports ipbx anchored
    for it (where the browser sends, and where the phone sends)."""

    tab: BrowserTab
    peer: WebRtcPeer
    keys: SrtpSessions
    for_browser: int
    for_phone: int


class Demultiplexer:
    """Reads the browsers' shared socket while calls are set up, and hands each datagram
    to the peer whose ipbx port it came from."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self.peers: dict[Address, WebRtcPeer] = {}
        asyncio.get_running_loop().add_reader(sock.fileno(), self._readable)

    def send(self, data: bytes, address: Address) -> None:
        with contextlib.suppress(BlockingIOError):
            self._sock.sendto(data, address)

    def close(self) -> None:
        asyncio.get_running_loop().remove_reader(self._sock.fileno())

    def _readable(self) -> None:
        while True:
            try:
                data, source = self._sock.recvfrom(2048)
            except BlockingIOError:
                return
            peer = self.peers.get(source)
            if peer is not None:
                peer.datagram(data)


async def browser_calls(
    args: argparse.Namespace, media: Media, phone: Media, sockets: tuple[socket.socket, ...]
) -> tuple[UserAgents, list[BrowserCall], int]:
    """Register the phone, set up args.calls browser calls; the phone, the calls and
    how many failed."""
    browser_sock, phone_sock = sockets
    agents = UserAgents(
        server_port=args.sip_port,
        caller="",
        caller_password="",
        callee=args.callee,
        callee_password=args.callee_password,
        caller_media=(0, 0, ""),
        callee_media=(phone_sock.getsockname()[1], phone.payload_type, phone.rtpmap),
    )
    await agents.start()
    await agents.register_callee()
    demultiplexer = Demultiplexer(browser_sock)
    gate = asyncio.Semaphore(SETUP_CONCURRENCY)
    url = f"wss://{LOOPBACK}:{args.wss_port}"
    fmtp = OPUS_FMTP if media.payload_type == 111 else ""

    async def one(index: int) -> BrowserCall | None:
        user = str(args.first_browser + index)
        tab = BrowserTab(url, user, f"secret{user}", index)
        peer = WebRtcPeer(browser_sock.getsockname()[1], demultiplexer.send)
        leg = agents.expect_leg(index)
        async with gate:
            try:
                await tab.open()
                await tab.register()
                answer = await tab.call(
                    args.callee, peer.offer(media.payload_type, media.rtpmap, fmtp)
                )
                peer.answered(answer)
                assert peer.remote is not None
                demultiplexer.peers[peer.remote.address] = peer
                keys = await asyncio.wait_for(peer.keyed, 10)
                for_phone = await asyncio.wait_for(leg, 10)
            except (SipFailure, WebRtcFailure, WebSocketException, TimeoutError, OSError) as exc:
                print(f"call {index}: {exc!r}", file=sys.stderr)
                peer.close()
                await tab.hang_up()
                await tab.close()
                return None
            finally:
                agents.forget_leg(index)
        return BrowserCall(tab, peer, keys, peer.remote.address[1], for_phone)

    try:
        placed = await asyncio.gather(*(one(index) for index in range(args.calls)))
    finally:
        demultiplexer.close()
    calls = [call for call in placed if call is not None]
    return agents, calls, len(placed) - len(calls)


async def hang_up(agents: UserAgents, calls: list[BrowserCall]) -> int:
    """Each browser hangs up and closes its tab, then the phone unregisters; the number
    of BYEs not answered 200."""
    gate = asyncio.Semaphore(SETUP_CONCURRENCY * 2)

    async def one(call: BrowserCall) -> bool:
        async with gate:
            ok = await call.tab.hang_up()
            await call.tab.close()
            return ok

    done = await asyncio.gather(*(one(call) for call in calls))
    await agents.leave()
    return done.count(False)


def authenticator(session: pylibsrtp.Session) -> Callable[[bytes], bool]:
    """Whether a browser's SRTP packet passes libsrtp's authentication (and decrypts)."""
    unprotect = session.unprotect

    def authentic(packet: bytes) -> bool:
        try:
            unprotect(packet)
        except pylibsrtp.Error:
            return False
        return True

    return authentic


def streams_for(
    calls: Sequence[BrowserCall],
    browser_sock: socket.socket,
    phone_sock: socket.socket,
    media: Media,
    phone: Media,
) -> list[Stream]:
    streams: list[Stream] = []
    for call in calls:
        streams.append(
            Stream(
                browser_sock,
                call.for_browser,
                call.for_phone,
                media,
                True,
                protect=call.keys.outbound.protect,
            )
        )
        streams.append(
            Stream(
                phone_sock,
                call.for_phone,
                call.for_browser,
                phone,
                False,
                authentic=authenticator(call.keys.inbound),
            )
        )
    return streams


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sip-port", type=int, required=True, help="ipbx's UDP SIP port")
    parser.add_argument("--wss-port", type=int, required=True, help="ipbx's wss:// port")
    parser.add_argument("--server-pid", type=int, required=True, help="for its CPU time")
    parser.add_argument(
        "--mode", choices=("relay", "transcode"), default="relay", help="PCMU or Opus browsers"
    )
    parser.add_argument("--calls", type=int, required=True)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--first-browser", type=int, default=1002, help="first tab's extension")
    parser.add_argument("--callee", default="1001")
    parser.add_argument("--callee-password", default="secret1001")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    # Ahead of whatever else shares the core, as rtpload.py.
    with contextlib.suppress(PermissionError):
        os.setpriority(os.PRIO_PROCESS, 0, -10)
    media = opus() if args.mode == "transcode" else pcmu()
    phone = pcmu()
    sockets = (rtp_socket(), rtp_socket())
    record: dict[str, object] = {"server": "ipbx", "mode": f"webrtc-{args.mode}"}
    record["calls"] = args.calls
    started = time.monotonic()
    loop = asyncio.new_event_loop()
    try:
        agents, calls, failed = loop.run_until_complete(browser_calls(args, media, phone, sockets))
        record["setup_s"] = round(time.monotonic() - started, 2)
        record["setup_failed"] = failed
        try:
            if calls:
                record |= run_streams(
                    streams_for(calls, *sockets, media, phone),
                    sockets,
                    args.seconds,
                    args.server_pid,
                    clocked=args.mode == "transcode",
                )
        finally:
            record["teardown_failed"] = loop.run_until_complete(hang_up(agents, calls))
    finally:
        loop.close()
        for sock in sockets:
            sock.close()
    record["cpu"] = sorted(os.sched_getaffinity(0))
    print(json.dumps(record), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
