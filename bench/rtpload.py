"""RTP load through a media relay: N calls, 20 ms packets both ways, loss and added jitter.

    python bench/rtpload.py --server ipbx --sip-port P --server-pid PID --calls 500
    python bench/rtpload.py --server rtpengine --ng-port P --server-pid PID --calls 500
    python bench/rtpload.py --server ipbx ... --mode transcode --calls 100
    python bench/rtpload.py --server ipbx ... --mode conference --calls 500 --number 8000

Each call has a caller side (A) and a callee side (B); A's RTP goes to the relay's port
for A and comes out at B from the relay's port for B, and the other way round. Calls
are set up the way each relay is driven: through ipbx by SIP (bench/sipua.py: INVITE with
digest as 1000, answered by 1001), through rtpengine by its ng protocol (offer with A's
SDP, answer with B's: the ports rtpengine returns are where each side sends).

All callers share one UDP socket and all callees another: the relay anchors each call on
its own ports, so the port a packet comes from says which stream it belongs to. One
single-threaded loop (no asyncio: this is the load generator's hot path) sends every
stream's packet at its 20 ms tick, the streams spread over 1 ms slots, and reads what
the relay delivers after each slot's sends, with the kernel's receive timestamp
(SO_TIMESTAMPNS), so the time the generator takes to read a packet is not counted
against the relay. Between slots it sleeps rather than wait on its sockets (see
run_streams: a waiting reader's wake-ups are charged to the relay's sends). With
--callee-core, the callees' side (its socket's sends and arrivals) runs in a second
process, forked once the calls stand and pinned to that core, on the same ticks; the
figures are of both sides' packets together.

Figures, one JSON line on stdout:
  loss_pct         packets sent but never received, over packets sent (both directions);
  jitter_p99_ms    99th percentile of the delay a packet got beyond its stream's fastest
                   packet (receive time - send time - per-stream minimum): the delay
                   variation the relay added (ITU-T Y.1540 PDV, min-based); transcoded
                   streams against their 20 ms grid instead (see received_figures);
  server_cpu_pct   the relay's CPU (its process tree, /proc) over the steady window,
  server_us_per_packet  the same CPU per relayed packet;
  server_rss_mb    the relay's RSS with the calls up (its main process, /proc);
  machine_us_per_packet  both cores' busy time (processes and interrupts, the generator
                   included) per packet: the fair figure for a relay in the kernel, whose
                   work is charged to the senders' system calls and softirqs;
  generator_*      the generator's own CPU, lateness and kernel drops, so a saturated
                   generator is not mistaken for a slow relay.

In the mode `conference` every call is a member dialling a conference room (--number;
with --room-size S, member i dials number + i // S, rooms of S): --talkers members of
each room send speech, the others a quiet line's noise (about -60 dBov), all G.711 with
telephone-event offered, as desk phones do. What a member receives is the room's mix,
which the mixer sends on its own clock: its stream is held against its 20 ms grid (as a
transcoded one), and a tick the mixer missed is a packet lost.
Every loop is bounded: the run lasts --seconds, the drain at most DRAIN_S.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import math
import os
import pickle
import secrets
import select
import socket
import struct
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from bench.sipua import Call, SipFailure, UserAgents, playback_rate, sdp_body  # noqa: E402
from ipbx.media.codecs.opus import pcm_rate_for  # noqa: E402
from tests.support.processes import (  # noqa: E402
    core_idle_us,
    core_ticks,
    cpu_seconds,
    memory_of,
    udp_drops,
)
from tests.support.rtpengine import Bencodable, NgClient  # noqa: E402

LOOPBACK = "127.0.0.1"
PTIME_NS = 20_000_000
# Streams are spread over this many slots of one packet interval (1 ms each).
SLOTS = 20
SLOT_NS = PTIME_NS // SLOTS
# After the last send, read until nothing came for DRAIN_QUIET_S, or DRAIN_S at most.
DRAIN_S = 2.0
DRAIN_QUIET_S = 0.3
# Packets read from one socket before the loop looks at the clock again.
READ_BUDGET = 64
# Rounds of reading each socket after a slot's sends (a slot's packets fit in one or two).
DRAIN_ROUNDS = 8
# Linux socket options the socket module does not name (asm-generic/socket.h).
SO_RCVBUFFORCE = 33
SO_SNDBUFFORCE = 32
SO_TIMESTAMPNS = 35
BUFFER_BYTES = 16 << 20
SETUP_CONCURRENCY = 16
# Longer than the join chime a conference plays a caller before it enters the room.
JOIN_CHIME_S = 1.0


@dataclass(frozen=True)
class Media:
    """What one side sends: RTP payload type, SDP rtpmap, timestamp step per 20 ms, and
    payloads replayed in a loop."""

    payload_type: int
    rtpmap: str
    timestamp_step: int
    payloads: list[bytes]


def speech_like(rate: int, seconds: float = 2.0) -> np.ndarray:
    """A voiced-sounding test signal: a 140 Hz harmonic series, syllable-rate (4 Hz)
    amplitude modulation and a little noise, int16. Encoders do real work on it, unlike
    on silence or a pure tone."""
    t = np.arange(int(rate * seconds)) / rate
    voice = sum(np.sin(2 * np.pi * 140 * h * t) / h for h in range(1, 12) if 140 * h < rate / 2)
    envelope = 0.55 + 0.45 * np.sin(2 * np.pi * 4 * t)
    noise = np.random.default_rng(7).normal(0, 0.02, len(t))
    signal = 0.3 * envelope * voice / 3 + noise
    return (np.clip(signal, -1, 1) * 32767).astype(np.int16)


def encode_frames(codec: str, rate: int, options: dict[str, str]) -> list[bytes]:
    """Encode speech_like() once with PyAV into 20 ms payloads."""
    context = av.CodecContext.create(codec, "w")
    assert isinstance(context, av.audio.codeccontext.AudioCodecContext)
    context.sample_rate = rate
    context.layout = "mono"
    context.format = "s16"
    context.options = options
    if codec == "libopus":
        context.bit_rate = 32000
    context.open()
    pcm = speech_like(rate)
    frame_samples = rate // 50
    payloads: list[bytes] = []
    for index in range(len(pcm) // frame_samples):
        chunk = pcm[index * frame_samples : (index + 1) * frame_samples]
        frame = av.AudioFrame.from_ndarray(chunk.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = rate
        frame.pts = index * frame_samples
        payloads += [bytes(packet) for packet in context.encode(frame)]
    return payloads


def pcmu() -> Media:
    return Media(0, "PCMU/8000", 160, encode_frames("pcm_mulaw", 8000, {}))


def quiet_line() -> Media:
    """A member who listens: its line's noise, about -60 dBov, in PCMU."""
    noise = np.random.default_rng(11).normal(0, 30, 8000 * 2).astype(np.int16)
    context = av.CodecContext.create("pcm_mulaw", "w")
    assert isinstance(context, av.audio.codeccontext.AudioCodecContext)
    context.sample_rate, context.layout, context.format = 8000, "mono", "s16"
    context.open()
    payloads: list[bytes] = []
    for index in range(len(noise) // 160):
        frame = av.AudioFrame.from_ndarray(
            noise[index * 160 : (index + 1) * 160].reshape(1, -1), format="s16", layout="mono"
        )
        frame.sample_rate, frame.pts = 8000, index * 160
        payloads += [bytes(packet) for packet in context.encode(frame)]
    return Media(0, "PCMU/8000", 160, payloads)


def opus(playback_rate: int = 48000) -> Media:
    """Opus for a receiver that plays back at `playback_rate` (its maxplaybackrate, RFC
    7587 §6.1, which an encoder SHOULD heed, as libwebrtc does): libopus fed audio at
    that rate encodes no wider (narrowband at 8000). The RTP clock is 48 kHz and the
    rtpmap says 2 channels whatever is sent (RFC 7587 §4.1)."""
    options = {"application": "voip", "frame_duration": "20"}
    rate = pcm_rate_for(playback_rate)
    return Media(111, "opus/48000/2", 960, encode_frames("libopus", rate, options))


def heeding(calls: Sequence[CallPorts], caller: Media) -> dict[int, Media]:
    """What the caller sends on each playback rate the relay's answers gave it: Opus no
    wider than that rate, any other codec as it is."""
    rates = {c.caller_playback_rate for c in calls}
    opus_caller = caller.rtpmap.lower().startswith("opus/")
    return {r: opus(r) if opus_caller and r < 48000 else caller for r in rates}


@dataclass(frozen=True)
class CallPorts:
    """The relay's ports for one call: where A sends (and B's packets come from) and
    where B sends (and A's packets come from)."""

    for_caller: int
    for_callee: int
    # The maxplaybackrate of the relay's SDP to the caller (48000: none).
    caller_playback_rate: int = 48000


def rtp_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for force, plain in ((SO_RCVBUFFORCE, socket.SO_RCVBUF), (SO_SNDBUFFORCE, socket.SO_SNDBUF)):
        try:
            sock.setsockopt(socket.SOL_SOCKET, force, BUFFER_BYTES)
        except PermissionError:
            sock.setsockopt(socket.SOL_SOCKET, plain, BUFFER_BYTES)
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    sock.bind((LOOPBACK, 0))
    sock.setblocking(False)
    return sock


# ------------------------------------------------------------------------ call set-up


async def ipbx_calls(
    args: argparse.Namespace, caller: Media, callee: Media, ports: tuple[int, int]
) -> tuple[UserAgents, list[Call], int]:
    """Register the callee, place args.calls calls; the agents, the calls, failures.
    Conference members dial their room and nobody is registered."""
    conference = args.mode == "conference"
    agents = UserAgents(
        server_port=args.sip_port,
        caller=args.caller,
        caller_password=args.caller_password,
        callee=args.callee,
        callee_password=args.callee_password,
        caller_media=(ports[0], caller.payload_type, caller.rtpmap),
        callee_media=(ports[1], callee.payload_type, callee.rtpmap),
        caller_digits=conference,
    )
    await agents.start()
    if not conference:
        await agents.register_callee()
    gate = asyncio.Semaphore(SETUP_CONCURRENCY)

    async def one(index: int) -> Call | None:
        async with gate:
            try:
                return await agents.place_call(index, number=room_number(args, index))
            except (SipFailure, TimeoutError) as exc:
                print(f"call {index}: {exc}", file=sys.stderr)
                return None

    placed = await asyncio.gather(*(one(index) for index in range(args.calls)))
    calls = [call for call in placed if call is not None]
    return agents, calls, len(placed) - len(calls)


def room_number(args: argparse.Namespace, index: int) -> str:
    """The number member `index` dials in the mode conference ("" otherwise)."""
    if args.mode != "conference":
        return ""
    return str(int(args.number) + (index // args.room_size if args.room_size else 0))


def member_media(args: argparse.Namespace, index: int, talker: Media, quiet: Media) -> Media:
    """What member `index` sends: the first --talkers of each room talk."""
    place = index % args.room_size if args.room_size else index
    return talker if place < args.talkers else quiet


def discard_queued(sock: socket.socket) -> None:
    """Drop what arrived before the run: a member hears a join chime first (ipbx's own
    packets on the stream the mix continues), then the mix from the moment it joins.
    The last members' chimes end before the run starts."""
    time.sleep(JOIN_CHIME_S)
    with contextlib.suppress(BlockingIOError):
        while True:
            sock.recv(2048)


async def ipbx_hang_up(agents: UserAgents, calls: list[Call]) -> int:
    """BYE every call, then unbind the callee; the number of BYEs not answered 200."""
    gate = asyncio.Semaphore(SETUP_CONCURRENCY * 2)

    async def one(call: Call) -> bool:
        async with gate:
            return await agents.hang_up(call)

    done = await asyncio.gather(*(one(call) for call in calls))
    await agents.leave()
    return done.count(False)


def rtpengine_calls(
    client: NgClient,
    count: int,
    caller: Media,
    callee: Media,
    ports: tuple[int, int],
    calls: list[tuple[str, str, CallPorts]],
) -> None:
    """offer (A's SDP) and answer (B's SDP) per call, appended to `calls` as they are made
    (so a failure half-way still deletes them): the offer's answer is the SDP B gets
    (rtpengine's port for B), the answer's is the SDP A gets (its port for A)."""
    token = secrets.token_hex(4)
    flags: dict[str, Bencodable] = {"replace": ["origin", "session-connection"]}
    if caller.rtpmap != callee.rtpmap:
        # The callee's codec added to the offer (rtpengine's "codec-transcode"): B answers
        # with it alone, and rtpengine transcodes between the two.
        flags["codec"] = {"transcode": [callee.rtpmap.split("/")[0]]}
    for index in range(count):
        call_id, from_tag = f"rtpload-{token}-{index}", f"a{index}"
        offer = client.command(
            "offer",
            **{
                "call-id": call_id,
                "from-tag": from_tag,
                "sdp": sdp_body(ports[0], caller.payload_type, caller.rtpmap),
                **flags,
            },
        )
        answer = client.command(
            "answer",
            **{
                "call-id": call_id,
                "from-tag": from_tag,
                "to-tag": f"b{index}",
                "sdp": sdp_body(ports[1], callee.payload_type, callee.rtpmap),
                **flags,
            },
        )
        for_callee = _sdp_port(offer[b"sdp"])
        answered = answer[b"sdp"]
        assert isinstance(answered, bytes)
        call_ports = CallPorts(_sdp_port(answered), for_callee, playback_rate(answered))
        calls.append((call_id, from_tag, call_ports))


def _sdp_port(sdp: object) -> int:
    from bench.sipua import media_port

    assert isinstance(sdp, bytes)
    return media_port(sdp)


# ------------------------------------------------------------------------ the RTP run


@dataclass(frozen=True)
class Stream:
    """One direction of one call."""

    sender: socket.socket
    to_port: int  # the relay port it sends to
    from_port: int  # the relay port its packets come out of, at the other side
    media: Media
    forward: bool  # caller to callee
    # SRTP (a WebRTC side, bench/webrtcload.py): what protects a packet this stream sends,
    # and what tells whether one it delivers is authentic; None for plain RTP.
    protect: Callable[[bytes], bytes] | None = None
    authentic: Callable[[bytes], bool] | None = None


# A core's /proc/stat jiffies and cpuidle's idle microseconds (None: not kept).
CoreSample = tuple[list[int], int | None]


@dataclass(frozen=True)
class Mark:
    """One end of the steady part of the run: when, the server's CPU, the cores' counters
    (the generator's core and the server's)."""

    ns: int
    server_cpu: float
    cores: tuple[CoreSample, CoreSample]


@dataclass
class Window:
    """The steady part of the run, marked at its start and end by the process that keeps
    it, and the server's RSS at its start."""

    server_pid: int
    # The generator's core and the server's, or None for all cores (see core_sample).
    cores: tuple[int | None, int | None]
    marks: list[Mark] = field(default_factory=list)
    # The relay's RSS with every call up (its main process).
    server_rss_mb: float = 0.0

    def mark(self, now: int) -> None:
        if not self.marks:
            self.server_rss_mb = memory_of(self.server_pid)[0]
        cores = (core_sample(self.cores[0]), core_sample(self.cores[1]))
        self.marks.append(Mark(now, cpu_seconds(self.server_pid), cores))


@dataclass
class Side:
    """What one process of the generator sent and read (see run_streams)."""

    sent_ns: list[list[int]]
    rec_stream: list[int] = field(default_factory=list)
    rec_seq: list[int] = field(default_factory=list)
    rec_time: list[bytes] = field(default_factory=list)
    lateness: list[int] = field(default_factory=list)
    send_errors: int = 0
    stray: int = 0
    control: int = 0
    srtp_failures: int = 0
    # Its CPU and the packets it sent in the steady window.
    cpu_s: float = 0.0
    sent_in_window: int = 0

    def add(self, other: Side) -> None:
        """Take in the other process's side: its streams' sends, its arrivals."""
        for times, theirs in zip(self.sent_ns, other.sent_ns, strict=True):
            times += theirs
        self.rec_stream += other.rec_stream
        self.rec_seq += other.rec_seq
        self.rec_time += other.rec_time
        self.lateness += other.lateness
        self.send_errors += other.send_errors
        self.stray += other.stray
        self.control += other.control
        self.srtp_failures += other.srtp_failures
        self.cpu_s += other.cpu_s
        self.sent_in_window += other.sent_in_window


def run_streams(
    streams: Sequence[Stream],
    sockets: Sequence[socket.socket],
    seconds: float,
    server_pid: int,
    clocked: bool = False,
    callee_core: int | None = None,
) -> dict[str, float | int]:
    """Send every stream for `seconds`, read until drained; the figures (`clocked`: see
    received_figures). With `callee_core`, a second process on that core sends the
    streams of the second socket (the callees') and reads what arrives there, on the
    same ticks: each side's phones load the core they are on."""
    # Drops while the calls were set up (a conference's members hear the room from the
    # moment they join) are not the run's.
    ports = [sock.getsockname()[1] for sock in sockets]
    drops_before = udp_drops(ports)
    ticks = int(seconds * 1e9) // SLOT_NS
    own_core, server_core = _core_of(0), _core_of(server_pid)
    if callee_core is not None and callee_core != own_core:
        own_core = server_core = None
    window = Window(server_pid, (own_core, server_core))
    start = time.monotonic_ns() + 50_000_000
    every = range(len(streams))
    if callee_core is None:
        side = _run_side(streams, every, sockets, start, ticks, window)
    else:
        callees = sockets[1]
        reader, writer = os.pipe()
        child = os.fork()
        if child == 0:
            # Only this side's loop runs here: none of the caller's clean-up (the calls'
            # BYEs) may, whatever happens.
            code = 1
            try:
                os.close(reader)
                os.sched_setaffinity(0, {callee_core})
                theirs = [i for i in every if streams[i].sender is callees]
                with os.fdopen(writer, "wb") as out:
                    pickle.dump(_run_side(streams, theirs, [callees], start, ticks, None), out)
                code = 0
            finally:
                os._exit(code)
        os.close(writer)
        mine = [i for i in every if streams[i].sender is not callees]
        side = _run_side(streams, mine, sockets[:1], start, ticks, window)
        with os.fdopen(reader, "rb") as pipe:
            side.add(pickle.load(pipe))
        os.waitpid(child, 0)
    drops = udp_drops(ports) - drops_before

    # Each side read in arrival order; their union is put in the kernel's stamps' order.
    stamps = np.frombuffer(b"".join(side.rec_time), dtype=np.int64).reshape(-1, 2)
    order = np.lexsort((stamps[:, 1], stamps[:, 0]))
    figures = received_figures(
        np.array(side.rec_stream, dtype=np.int64)[order],
        np.array(side.rec_seq, dtype=np.int64)[order],
        stamps[order],
        side.sent_ns,
        math.ceil(ticks / SLOTS),
        [stream.forward for stream in streams],
        clocked=clocked,
    )
    begin, end = window.marks
    window_s = (end.ns - begin.ns) / 1e9
    own_core_use = _core_use(begin.cores[0], end.cores[0], own_core, window_s)
    server_core_use = _core_use(begin.cores[1], end.cores[1], server_core, window_s)
    server_cpu = end.server_cpu - begin.server_cpu
    own_pct, server_pct = 100 * side.cpu_s / window_s, 100 * server_cpu / window_s
    if server_core is None:
        # A server on every core (media workers) runs on the generator's too: what else
        # ran, and all that ran, is read off all cores at once.
        working = server_core_use[0] * (os.cpu_count() or 1)
        own_other = server_other = working - own_pct - server_pct
    elif server_core == own_core:
        working = own_core_use[0]
        own_other = server_other = working - own_pct - server_pct
    else:
        working = own_core_use[0] + server_core_use[0]
        own_other, server_other = own_core_use[0] - own_pct, server_core_use[0] - server_pct
    sent_in_window = side.sent_in_window
    late = np.array(side.lateness) / 1e6
    return {
        **figures,
        "server_cpu_pct": round(server_pct, 1),
        "server_us_per_packet": round(1e6 * server_cpu / max(1, sent_in_window), 2),
        # Everything both cores did (processes and interrupts), the load tool included: a
        # relay in the kernel does its work in the sender's system calls and softirqs,
        # which no relay process is charged for.
        "machine_us_per_packet": round(1e4 * working * window_s / max(1, sent_in_window), 2),
        "packets_per_s": round(sent_in_window / window_s),
        "window_s": round(window_s, 2),
        "server_rss_mb": round(window.server_rss_mb, 1),
        "generator_cpu_pct": round(own_pct, 1),
        # What else ran on each core (processes competing with the run, and interrupts
        # not taken in their system calls), and time the hypervisor took away.
        "generator_core_other_pct": round(own_other, 1),
        "server_core_other_pct": round(server_other, 1),
        "generator_core_irq_pct": own_core_use[1],
        "server_core_irq_pct": server_core_use[1],
        "generator_core_steal_pct": own_core_use[2],
        "server_core_steal_pct": server_core_use[2],
        "generator_late_p99_ms": round(float(np.percentile(late, 99)), 3),
        "generator_late_max_ms": round(float(late.max()), 3),
        "generator_drops": drops,
        "generator_send_errors": side.send_errors,
        "stray": side.stray,
        "control": side.control,
        "srtp_failures": side.srtp_failures,
    }


def _run_side(
    streams: Sequence[Stream],
    mine: Sequence[int],
    drained: Sequence[socket.socket],
    start: int,
    ticks: int,
    window: Window | None,
) -> Side:
    """Send streams `mine` on the ticks from `start` (monotonic ns) and read `drained`
    meanwhile, then until they fall quiet; the process that keeps `window` marks it."""
    count = len(streams)
    rng = np.random.default_rng()
    seq0 = [int(x) for x in rng.integers(0, 1 << 16, count)]
    ts0 = [int(x) for x in rng.integers(0, 1 << 32, count)]
    headers = []
    for index, stream in enumerate(streams):
        header = bytearray(12)
        header[0] = 0x80
        header[1] = stream.media.payload_type
        struct.pack_into(">I", header, 8, 0x10000000 + index)
        headers.append(header)
    sendto = [stream.sender.sendto for stream in streams]
    dests = [(LOOPBACK, stream.to_port) for stream in streams]
    payloads = [stream.media.payloads for stream in streams]
    steps = [stream.media.timestamp_step for stream in streams]
    slots: list[list[int]] = [[] for _ in range(SLOTS)]
    for index in mine:
        slots[index % SLOTS].append(index)
    by_port = {stream.from_port: index for index, stream in enumerate(streams)}
    protects = [stream.protect for stream in streams]
    authentics = [stream.authentic for stream in streams]
    side = Side([[] for _ in range(count)])
    sent_ns, lateness = side.sent_ns, side.lateness
    rec_stream, rec_seq, rec_time = side.rec_stream, side.rec_seq, side.rec_time

    poller = select.epoll()
    receivers = {}
    buffer = bytearray(2048)
    ancillary = socket.CMSG_SPACE(16)
    for sock in drained:
        poller.register(sock.fileno(), select.EPOLLIN)
        receivers[sock.fileno()] = sock.recvmsg_into

    def drain(fd: int) -> int:
        receive = receivers[fd]
        got = 0
        for _ in range(READ_BUDGET):
            try:
                size, anc, _, source = receive([buffer], ancillary)
            except BlockingIOError:
                break
            index = by_port.get(source[1])
            if index is None or not anc:
                side.stray += 1
                continue
            # STUN, DTLS (RFC 7983 §7) or RTCP muxed on the RTP port (RFC 5761 §4).
            if not 128 <= buffer[0] < 192 or 192 <= buffer[1] <= 223:
                side.control += 1
                continue
            authentic = authentics[index]
            if authentic is not None and not authentic(bytes(buffer[:size])):
                side.srtp_failures += 1
                continue
            rec_stream.append(index)
            rec_seq.append(buffer[2] << 8 | buffer[3])
            rec_time.append(anc[0][2])
            got += 1
        return got

    pack = struct.pack_into
    clock, wall = time.monotonic_ns, time.time_ns
    warmup_tick = min(ticks // 4, 1_000_000_000 // SLOT_NS)
    cpu_before, sent_before = 0.0, 0
    # A cyclic collection walks every list this loop fills: milliseconds of stall, paid
    # as lateness by the packets due then. Nothing here makes reference cycles.
    gc.collect()
    gc.disable()
    for tick in range(ticks):
        if tick == warmup_tick:
            if window is not None:
                window.mark(clock())
            cpu_before, sent_before = time.process_time(), sum(map(len, sent_ns))
        due = start + tick * SLOT_NS
        now = clock()
        if now < due:
            # Sleep, not wait on the sockets: every datagram to a socket someone waits on
            # wakes them, and on loopback that wake-up (an interrupt to this core, a VM
            # exit on a VM) is paid in the relay's send, 8 % of ipbx's CPU at 80
            # transcoded calls. Phones on other machines cost a relay no such thing, and
            # the kernel stamps each arrival, so reading a slot later changes no figure.
            time.sleep((due - now) / 1e9)
            now = clock()
        lateness.append(now - due)
        k = tick // SLOTS
        for index in slots[tick % SLOTS]:
            header = headers[index]
            pack(
                ">HI",
                header,
                2,
                (seq0[index] + k) & 0xFFFF,
                (ts0[index] + k * steps[index]) & 0xFFFFFFFF,
            )
            stream_payloads = payloads[index]
            packet = header + stream_payloads[k % len(stream_payloads)]
            protect = protects[index]
            data = packet if protect is None else protect(bytes(packet))
            sent_at = wall()
            try:
                sendto[index](data, dests[index])
            except OSError:
                side.send_errors += 1
                continue
            sent_ns[index].append(sent_at)
        for _ in range(DRAIN_ROUNDS):
            ready = poller.poll(0)
            if not ready:
                break
            for fd, _ in ready:
                drain(fd)
    if window is not None:
        window.mark(clock())
    side.cpu_s = time.process_time() - cpu_before
    side.sent_in_window = sum(map(len, sent_ns)) - sent_before
    quiet_since = clock()
    drain_end = quiet_since + int(DRAIN_S * 1e9)
    while (now := clock()) < drain_end and now - quiet_since < DRAIN_QUIET_S * 1e9:
        for fd, _ in poller.poll(0.05):
            if drain(fd):
                quiet_since = clock()
    gc.enable()
    poller.close()
    return side


def _core_of(pid: int) -> int | None:
    """The one core a process is pinned to, or None (then /proc/stat's total)."""
    cores = os.sched_getaffinity(pid)
    return next(iter(cores)) if len(cores) == 1 else None


def core_sample(cpu: int | None) -> CoreSample:
    """A core's (all cores' if None) /proc/stat jiffies and cpuidle's idle microseconds."""
    return core_ticks(cpu), core_idle_us(cpu)


def _core_use(
    before: CoreSample, after: CoreSample, cpu: int | None, seconds: float
) -> tuple[float, float, float]:
    """Percent of a core's time (all cores' if `cpu` is None) between two samples
    `seconds` apart at work (processes and interrupts), in interrupts (irq, softirq) and
    stolen by the hypervisor. How busy the core was comes from cpuidle's exact idle time
    where the kernel keeps it: /proc/stat's jiffies are sampled at the timer tick, which
    this loop's 1 ms sleeps alias (a core read 48 % less busy than the generator on it
    alone). The jiffies still tell the interrupts' and the hypervisor's shares."""
    delta = [end - start for start, end in zip(before[0], after[0], strict=True)]
    total = max(1, sum(delta))
    interrupts, stolen = 100 * (delta[5] + delta[6]) / total, 100 * delta[7] / total
    idle_before, idle_after = before[1], after[1]
    if idle_before is None or idle_after is None:
        working = 100 * (sum(delta[0:3]) + delta[5] + delta[6]) / total
    else:
        cores = 1 if cpu is not None else os.cpu_count() or 1
        working = 100 - 100 * (idle_after - idle_before) / (1e6 * seconds * cores) - stolen
    return round(working, 1), round(interrupts, 1), round(stolen, 1)


def received_figures(
    stream: np.ndarray,
    seq: np.ndarray,
    stamps: np.ndarray,
    sent_ns: list[list[int]],
    packets_per_stream: int,
    forward: list[bool],
    clocked: bool = False,
) -> dict[str, float | int]:
    """Loss and added delay from what arrived (arrival order) against what was sent.

    A packet's place in its stream is its sequence number less the first one received.
    A relay keeps the sender's numbers, so the place indexes the packet's send time (a
    lost first packet shifts a stream by a constant, which the per-stream minimum takes
    out). A transcoder or a mixer (`clocked`) numbers its own packets, and one that plays
    out on its own clock may conceal or drop a frame on the way, so a place need not say
    which packet went in: its packets are held against their ideal 20 ms grid instead (place x
    20 ms), which measures how evenly the stream arrives (the receiver's view). A
    transcoder's resampler holds a few samples back, so its last frame comes out only
    with the next packet, which never comes when the sender stops: one frame short at
    the end of a clocked stream is not a loss.
    """
    count = len(sent_ns)
    sent = np.full((count, packets_per_stream), -1, dtype=np.int64)
    for index, times in enumerate(sent_ns):
        sent[index, : len(times)] = times
    sent_counts = np.array([len(times) for times in sent_ns])
    arrival = stamps[:, 0] * 1_000_000_000 + stamps[:, 1]
    first_seq = np.zeros(count, dtype=np.int64)
    heard, first_index = np.unique(stream, return_index=True)
    first_seq[heard] = seq[first_index]
    position = (seq - first_seq[stream]) & 0xFFFF
    valid = position < sent_counts[stream]
    stream, position, arrival = stream[valid], position[valid], arrival[valid]
    if clocked:
        transit = arrival - position * PTIME_NS
    else:
        ok = sent[stream, position] >= 0
        stream, transit = stream[ok], (arrival - sent[stream, position])[ok]
    fastest = np.full(count, np.iinfo(np.int64).max)
    np.minimum.at(fastest, stream, transit)
    added_ms = (transit - fastest[stream]) / 1e6 if len(transit) else np.zeros(1)
    received = np.bincount(stream, minlength=count)
    direction = np.array(forward)
    total_sent = int(sent_counts.sum())

    def loss(mask: np.ndarray) -> float:
        expected = int(sent_counts[mask].sum())
        held = 1 if clocked else 0
        lost = int(np.maximum(sent_counts[mask] - received[mask] - held, 0).sum())
        return round(100 * lost / max(1, expected), 4)

    return {
        "sent": total_sent,
        "received": int(received.sum()),
        "loss_pct": loss(np.ones(count, dtype=bool)),
        "loss_pct_forward": loss(direction),
        "loss_pct_backward": loss(~direction),
        "silent_streams": int((received == 0).sum()),
        "jitter_p50_ms": round(float(np.percentile(added_ms, 50)), 3),
        "jitter_p99_ms": round(float(np.percentile(added_ms, 99)), 3),
        "jitter_max_ms": round(float(added_ms.max()), 3),
        "jitter_p99_ms_forward": _p99(added_ms[direction[stream]]),
        "jitter_p99_ms_backward": _p99(added_ms[~direction[stream]]),
        "transit_min_ms": round(float(fastest[fastest < np.iinfo(np.int64).max].min()) / 1e6, 3)
        if len(transit)
        else 0.0,
    }


def _p99(values: np.ndarray) -> float:
    return round(float(np.percentile(values, 99)), 3) if len(values) else 0.0


def streams_for(
    calls: Sequence[CallPorts],
    caller_sock: socket.socket,
    callee_sock: socket.socket,
    caller: Media,
    callee: Media,
) -> list[Stream]:
    callers = heeding(calls, caller)
    if len(callers) > 1 or 48000 not in callers:
        rates = ", ".join(map(str, sorted(callers)))
        print(f"the caller sends audio for playback at {rates} Hz", file=sys.stderr, flush=True)
    streams: list[Stream] = []
    for ports in calls:
        sent = callers[ports.caller_playback_rate]
        streams.append(Stream(caller_sock, ports.for_caller, ports.for_callee, sent, True))
        streams.append(Stream(callee_sock, ports.for_callee, ports.for_caller, callee, False))
    return streams


# ------------------------------------------------------------------------ command line


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--server", choices=("ipbx", "rtpengine"), required=True)
    parser.add_argument("--server-pid", type=int, required=True, help="for its CPU time")
    parser.add_argument("--sip-port", type=int, help="ipbx: its UDP SIP port")
    parser.add_argument("--ng-port", type=int, help="rtpengine: its ng control port")
    parser.add_argument("--mode", choices=("relay", "transcode", "conference"), default="relay")
    parser.add_argument("--number", default="8000", help="conference: the room's number")
    parser.add_argument("--room-size", type=int, default=0, help="conference: 0 = one room")
    parser.add_argument("--talkers", type=int, default=3, help="conference: per room")
    parser.add_argument("--calls", type=int, required=True)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument(
        "--callee-core", type=int, help="send and read the callees' side from this core"
    )
    parser.add_argument("--caller", default="1000")
    parser.add_argument("--caller-password", default="secret1000")
    parser.add_argument("--callee", default="1001")
    parser.add_argument("--callee-password", default="secret1001")
    args = parser.parse_args(argv)
    if args.server == "ipbx" and args.sip_port is None:
        parser.error("--server ipbx needs --sip-port")
    if args.server == "rtpengine" and args.ng_port is None:
        parser.error("--server rtpengine needs --ng-port")
    if args.server == "rtpengine" and args.mode == "conference":
        parser.error("rtpengine has no conferences")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    # Ahead of whatever else shares the core: a late generator sends in bursts, and the
    # queue a burst builds in the relay would count as the relay's jitter.
    with contextlib.suppress(PermissionError):
        os.setpriority(os.PRIO_PROCESS, 0, -10)
    # The caller offers only opus when transcoding; the callee answers only PCMU.
    caller = opus() if args.mode == "transcode" else pcmu()
    callee = pcmu()
    caller_sock, callee_sock = rtp_socket(), rtp_socket()
    ports = (caller_sock.getsockname()[1], callee_sock.getsockname()[1])
    record: dict[str, object] = {"server": args.server, "mode": args.mode, "calls": args.calls}
    if args.mode == "conference":
        record |= {"room_size": args.room_size or args.calls, "talkers": args.talkers}
    started = time.monotonic()
    try:
        if args.server == "ipbx":
            loop = asyncio.new_event_loop()
            try:
                agents, placed, failed = loop.run_until_complete(
                    ipbx_calls(args, caller, callee, ports)
                )
                record["setup_s"] = round(time.monotonic() - started, 2)
                record["setup_failed"] = failed
                # For a bench that runs beside the media (bench/parts/loaded.py).
                print(f"media running: {len(placed)} calls", file=sys.stderr, flush=True)
                if args.mode == "conference":
                    quiet = quiet_line()
                    streams = [
                        Stream(caller_sock, c.caller_relay_port, c.caller_relay_port,
                               member_media(args, c.index, caller, quiet), True)
                        for c in placed
                    ]  # fmt: skip
                    discard_queued(caller_sock)
                else:
                    calls = [
                        CallPorts(c.caller_relay_port, c.callee_relay_port, c.caller_playback_rate)
                        for c in placed
                    ]
                    streams = streams_for(calls, caller_sock, callee_sock, caller, callee)
                try:
                    record |= run_streams(
                        streams,
                        (caller_sock, callee_sock),
                        args.seconds,
                        args.server_pid,
                        clocked=args.mode != "relay",
                        callee_core=args.callee_core,
                    )
                finally:
                    hang_up = ipbx_hang_up(agents, placed)
                    record["teardown_failed"] = loop.run_until_complete(hang_up)
            finally:
                loop.close()
        else:
            client = NgClient(args.ng_port)
            engine: list[tuple[str, str, CallPorts]] = []
            try:
                rtpengine_calls(client, args.calls, caller, callee, ports, engine)
                record["setup_s"] = round(time.monotonic() - started, 2)
                record["setup_failed"] = args.calls - len(engine)
                streams = streams_for(
                    [ports for _, _, ports in engine], caller_sock, callee_sock, caller, callee
                )
                record |= run_streams(
                    streams,
                    (caller_sock, callee_sock),
                    args.seconds,
                    args.server_pid,
                    clocked=args.mode != "relay",
                    callee_core=args.callee_core,
                )
            finally:
                for call_id, _, _ in engine:
                    client.command("delete", **{"call-id": call_id})
                client.close()
    finally:
        caller_sock.close()
        callee_sock.close()
    record["cpu"] = sorted(os.sched_getaffinity(0))
    print(json.dumps(record), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
