"""An SRTP call (baresip with mandatory SRTP) to a plain RTP phone carries audio both
ways, and the SRTP leg's packets on the wire are not plaintext.

test_baresip.py shows the audio part. Here the same call is also watched on the wire: an
AF_PACKET socket on `lo` (we run as root; no tcpdump needed) captures every UDP datagram
to and from ipbx's SIP port and RTP range during the call. The SDP in the captured SIP
says which ports each leg uses (RTP/SAVP for baresip's leg, RTP/AVP for the phone's);
the RTP between those ports is then judged.

Both tones are exactly periodic in PCMU (1 kHz: 8 samples; 700 Hz: 80 samples), and a
20 ms packet holds whole periods of either, so plaintext payloads are all alike, repeat
within themselves and use few byte values (about 2 and 5 bits of entropy a byte). AES
counter mode gives every packet a fresh keystream (RFC 3711 §4.1.1), so the SRTP payloads
are all different and look uniformly random (8 bits a byte), and each carries the 80-bit
HMAC-SHA1 tag (§4.2): 160 + 10 bytes.
The phone's leg, which must show the tones, is the control that makes the check bite.
"""

from __future__ import annotations

import math
import re
import socket
import statistics
import struct
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from tests.support.baresip import TOLERANCE_HZ, baresip_calls_phone
from tests.support.server import IpbxFactory
from tests.support.softphone import write_tone

ETH_P_IP = 0x0800
# Loopback hands a packet socket each datagram twice: as sent (PACKET_OUTGOING) and as
# received (PACKET_HOST). Only the second is kept.
PACKET_OUTGOING = 4
SOL_PACKET = 263
PACKET_STATISTICS = 6
CAPTURE_LIMIT = 200_000
RATE = 8000
PCMU_FRAME = 160  # 20 ms at 8 kHz, one byte a sample
SRTP_TAG = 10  # AES_CM_128_HMAC_SHA1_80 (RFC 4568 §6.2.1)
CALL_SECONDS = 6  # what the phone plays, 300 packets a direction


@dataclass(frozen=True)
class Datagram:
    src: tuple[str, int]
    dst: tuple[str, int]
    payload: bytes


class LoopbackCapture:
    """Capture the UDP datagrams on `lo` that `keep(src_port, dst_port)` wants, in a
    thread, until the block ends (bounded by CAPTURE_LIMIT datagrams)."""

    def __init__(self, keep: Callable[[int, int], bool]) -> None:
        self.keep = keep
        self.datagrams: list[Datagram] = []
        self.kernel_drops = 0
        self._stop = threading.Event()
        self._sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_IP))
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 24)
        self._sock.bind(("lo", 0))
        self._sock.settimeout(0.1)
        self._thread = threading.Thread(target=self._run, name="lo-capture", daemon=True)

    def __enter__(self) -> LoopbackCapture:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        stats = self._sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8)
        self.kernel_drops = struct.unpack("II", stats)[1]
        self._sock.close()

    def _run(self) -> None:
        while not self._stop.is_set() and len(self.datagrams) < CAPTURE_LIMIT:
            try:
                packet, link = self._sock.recvfrom(65535)
            except TimeoutError:
                continue
            if link[2] == PACKET_OUTGOING:
                continue
            datagram = _udp(packet)
            if datagram is not None and self.keep(datagram.src[1], datagram.dst[1]):
                self.datagrams.append(datagram)


def _udp(packet: bytes) -> Datagram | None:
    """The UDP datagram in an IPv4 packet (RFC 791, RFC 768), unfragmented only."""
    if len(packet) < 28 or packet[0] >> 4 != 4 or packet[9] != socket.IPPROTO_UDP:
        return None
    if struct.unpack_from("!H", packet, 6)[0] & 0x3FFF:  # MF flag or a fragment offset
        return None
    ihl = (packet[0] & 0x0F) * 4
    src_port, dst_port, length = struct.unpack_from("!HHH", packet, ihl)
    src, dst = socket.inet_ntoa(packet[12:16]), socket.inet_ntoa(packet[16:20])
    return Datagram((src, src_port), (dst, dst_port), packet[ihl + 8 : ihl + length])


@dataclass(frozen=True)
class Sdp:
    """Where one side of one leg receives media, as its SDP said."""

    address: tuple[str, int]
    proto: str
    crypto: tuple[str, ...]


def _sdp_of(sip: bytes) -> Sdp | None:
    _, _, body = sip.partition(b"\r\n\r\n")
    text = body.decode(errors="replace")
    media = re.search(r"^m=audio (\d+) (\S+)", text, re.MULTILINE)
    host = re.search(r"^c=IN IP4 (\S+)", text, re.MULTILINE)
    if media is None or host is None:
        return None
    suites = re.findall(r"^a=crypto:\d+ (\S+)", text, re.MULTILINE)
    return Sdp((host.group(1), int(media.group(1))), media.group(2), tuple(suites))


@dataclass(frozen=True)
class Rtp:
    payload_type: int
    seq: int
    payload: bytes  # everything after the header: media, plus the auth tag in SRTP


def _rtp(data: bytes) -> Rtp | None:
    """RFC 3550 §5.1: version 2, CSRCs and a header extension skipped."""
    if len(data) < 12 or data[0] >> 6 != 2 or 72 <= data[1] & 0x7F <= 76:
        return None  # not RTP, or RTCP on a muxed port (RFC 5761 §4)
    offset = 12 + 4 * (data[0] & 0x0F)
    if data[0] & 0x10:
        (words,) = struct.unpack_from("!H", data, offset + 2)
        offset += 4 + 4 * words
    return Rtp(data[1] & 0x7F, struct.unpack_from("!H", data, 2)[0], data[offset:])


def byte_entropy(data: bytes) -> float:
    """Shannon entropy in bits per byte: 8 for uniform random bytes."""
    counts = Counter(data)
    total = len(data)
    return -sum(n / total * math.log2(n / total) for n in counts.values())


def self_similarity(payload: bytes, max_lag: int = 80) -> float:
    """The largest share of bytes equal to the byte `lag` further on, over lags 1-80:
    1.0 for a PCMU tone whose period divides into 80 samples, ~1/256 for random bytes."""
    data = np.frombuffer(payload, dtype=np.uint8)
    return max(float(np.mean(data[:-lag] == data[lag:])) for lag in range(1, max_lag + 1))


def ulaw_decode(data: bytes) -> np.ndarray:
    """ITU-T G.711 μ-law to linear (the classic 14-bit expansion, scaled to 16 bits)."""
    u = ~np.frombuffer(data, dtype=np.uint8)
    exponent = (u >> 4) & 0x07
    magnitude = ((((u & 0x0F).astype(np.int32) << 3) + 0x84) << exponent) - 0x84
    return np.where(u & 0x80, -magnitude, magnitude)


def tone_share(payloads: list[bytes], hz: float) -> float:
    """The share of spectral energy within 20 Hz of `hz` when the payloads are decoded as
    PCMU: near 1 for the tone, about 40/4000 = 1 % for noise."""
    samples = ulaw_decode(b"".join(payloads)).astype(np.float64)
    power = np.abs(np.fft.rfft(samples - samples.mean())) ** 2
    frequencies = np.fft.rfftfreq(samples.size, 1 / RATE)
    return float(power[np.abs(frequencies - hz) <= 20].sum() / power.sum())


@dataclass
class Flow:
    """The RTP of one direction of one leg."""

    name: str
    packets: list[Rtp]

    @property
    def payloads(self) -> list[bytes]:
        return [p.payload for p in self.packets]

    def describe(self) -> str:
        lengths = Counter(len(p) for p in self.payloads)
        return f"{self.name}: {len(self.packets)} packets, payload lengths {dict(lengths)}"


def _flow(capture: LoopbackCapture, name: str, src: Sdp, dst: Sdp) -> Flow:
    """RTP sent from the port `src` receives on (symmetric RTP, RFC 4961) to `dst`."""
    packets = [
        rtp
        for d in capture.datagrams
        if d.src == src.address and d.dst == dst.address
        if (rtp := _rtp(d.payload)) is not None
    ]
    return Flow(name, packets)


def test_srtp_call_to_plain_rtp_phone_is_not_plaintext_on_the_wire(
    ipbx_server: IpbxFactory, tmp_path: Path
) -> None:
    server = ipbx_server(extensions=2)
    first, last = server.rtp_range

    def ours(src_port: int, dst_port: int) -> bool:
        return any(p == server.port or first <= p <= last for p in (src_port, dst_port))

    # baresip's file outlasts the phone's, so the phone's hang-up ends the call.
    tone = write_tone(tmp_path / "1000hz.wav", 1000, CALL_SECONDS + 2)
    with LoopbackCapture(ours) as capture:
        heard_by_us, heard_by_baresip, log = baresip_calls_phone(
            server, tmp_path, tone, phone_seconds=CALL_SECONDS, media_encryption="srtp-mand"
        )
    # Audio both ways (as in test_baresip.py).
    assert heard_by_us.dominant_hz == pytest.approx(1000, abs=TOLERANCE_HZ), log
    assert heard_by_baresip.dominant_hz == pytest.approx(700, abs=TOLERANCE_HZ), log

    # Who receives media where, from the SDP of the captured SIP (offers and answers).
    sdps: dict[tuple[bool, str], set[Sdp]] = {}
    for d in capture.datagrams:
        if server.port in (d.src[1], d.dst[1]) and (sdp := _sdp_of(d.payload)) is not None:
            sdps.setdefault((d.src[1] == server.port, sdp.proto), set()).add(sdp)
    assert set(sdps) == {
        (True, "RTP/SAVP"),
        (False, "RTP/SAVP"),
        (True, "RTP/AVP"),
        (False, "RTP/AVP"),
    }, sdps
    assert all(len(found) == 1 for found in sdps.values()), sdps
    ipbx_srtp, baresip = next(iter(sdps[True, "RTP/SAVP"])), next(iter(sdps[False, "RTP/SAVP"]))
    ipbx_plain, phone = next(iter(sdps[True, "RTP/AVP"])), next(iter(sdps[False, "RTP/AVP"]))
    assert ipbx_srtp.crypto == ("AES_CM_128_HMAC_SHA1_80",), ipbx_srtp
    assert "AES_CM_128_HMAC_SHA1_80" in baresip.crypto, baresip
    assert first <= ipbx_srtp.address[1] <= last and first <= ipbx_plain.address[1] <= last

    srtp_flows = [
        _flow(capture, "baresip -> ipbx (SRTP)", baresip, ipbx_srtp),
        _flow(capture, "ipbx -> baresip (SRTP)", ipbx_srtp, baresip),
    ]
    plain_flows = [
        _flow(capture, "ipbx -> phone (RTP)", ipbx_plain, phone),
        _flow(capture, "phone -> ipbx (RTP)", phone, ipbx_plain),
    ]
    summary = "\n".join(
        [f.describe() for f in srtp_flows + plain_flows]
        + [f"capture: {len(capture.datagrams)} datagrams, kernel drops {capture.kernel_drops}"]
    )
    # The tone each SRTP direction carries, and the plain direction carrying it too.
    tones = {srtp_flows[0].name: 1000, srtp_flows[1].name: 700}

    for flow in srtp_flows:
        # (a) hundreds of packets each way: the call really ran over this leg.
        assert len(flow.packets) >= 200, summary
        # RTP headers stay in the clear in SRTP (RFC 3711 §3.1): PCMU, in sequence.
        assert {p.payload_type for p in flow.packets} == {0}, summary
        # 160 bytes of PCMU plus the 10-byte authentication tag, every packet.
        assert {len(p) for p in flow.payloads} == {PCMU_FRAME + SRTP_TAG}, summary
        # (b) not the plaintext: every payload is different, none repeats within itself,
        # the bytes are as varied as random ones, and decoded as PCMU there is no tone.
        assert len(set(flow.payloads)) == len(flow.payloads), summary
        similarity = statistics.median(self_similarity(p) for p in flow.payloads)
        assert similarity < 0.05, (flow.name, similarity)
        entropy = byte_entropy(b"".join(flow.payloads))
        assert entropy > 7.9, (flow.name, entropy)
        media = [p[:PCMU_FRAME] for p in flow.payloads]
        assert tone_share(media, tones[flow.name]) < 0.05, flow.name

    for flow, hz in zip(plain_flows, (1000, 700), strict=True):
        # (c) the control: the plain leg carries the same call recognisably, so the
        # measures above do tell a tone from ciphertext.
        assert len(flow.packets) >= 200, summary
        assert {len(p) for p in flow.payloads} == {PCMU_FRAME}, summary
        assert len(set(flow.payloads)) <= 0.1 * len(flow.payloads), summary
        similarity = statistics.median(self_similarity(p) for p in flow.payloads)
        assert similarity > 0.95, (flow.name, similarity)
        # A period of 8 (or 80) samples uses at most 8 (or 80) byte values.
        entropy = byte_entropy(b"".join(flow.payloads))
        assert entropy < 6.0, (flow.name, entropy)
        assert tone_share(flow.payloads, hz) > 0.9, flow.name
    # And no plaintext payload of the call shows up on the SRTP leg.
    plain_payloads = {p for flow in plain_flows for p in flow.payloads}
    assert not plain_payloads & {p[:PCMU_FRAME] for f in srtp_flows for p in f.payloads}
