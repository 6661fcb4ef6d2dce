"""A browser's audio transport, lean: what a WebRTC bench caller needs and nothing more.

One WebRtcPeer per call writes the offer a browser makes (JSEP, RFC 8829: one audio
m-line in UDP/TLS/RTP/SAVPF with BUNDLE, rtcp-mux, a=ice-ufrag/pwd, one host candidate,
its certificate's a=fingerprint and a=setup:actpass), and once the server's answer is
in, does what the browser's transport does before media flows:

- ICE as the controlling, full agent against the server's ICE-lite (RFC 8445): one
  Binding request with USE-CANDIDATE to the server's one host candidate, signed with
  the server's ice-pwd (aioice's STUN messages), resent until answered;
- DTLS-SRTP (RFC 5763, 5764) through OpenSSL (pyOpenSSL), in the role the answer's
  a=setup leaves to the browser, the server's certificate checked against its
  a=fingerprint, and the exported keys as two libsrtp sessions (pylibsrtp): one to
  protect what the browser sends, one to unprotect what it receives.

After that the peer is done: the bench's send loop (bench/rtpload.py) uses the sessions
directly. Not done here, though a browser does them: ICE consent checks (RFC 7675) and
SRTCP reports, each a packet every few seconds a call against the media's 100 a second.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import string
from collections.abc import Callable
from dataclasses import dataclass

import pylibsrtp
from aioice import stun
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from OpenSSL import SSL

# The browsers' certificate: self-signed ECDSA P-256 as Chrome makes one, and as ipbx
# makes its own (this process makes its own too: nothing is shared with the server).
from ipbx.media.webrtc import certificate as identity

LOOPBACK = "127.0.0.1"
Address = tuple[str, int]
# RFC 5764 §4.1.2 profiles (OpenSSL's names), as libsrtp knows them.
PROFILES = {
    b"SRTP_AES128_CM_SHA1_80": pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
    b"SRTP_AES128_CM_SHA1_32": pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_32,
}
# RFC 5764 §4.2: client key | server key | client salt | server salt.
EXPORTER_LABEL = b"EXTRACTOR-dtls_srtp"
KEY, SALT = 16, 14
# RFC 8445 §5.1.2.1 priority of a host candidate, component 1; a check carries the
# priority of a peer-reflexive one (type preference 110).
HOST_PRIORITY = (126 << 24) + (65535 << 8) + 255
CHECK_PRIORITY = (110 << 24) + (65535 << 8) + 255
CHECK_INTERVAL_S = 0.1
CHECK_ATTEMPTS = 50
DATAGRAM = 1500
_ICE_CHARS = string.ascii_letters + string.digits + "+/"


class WebRtcFailure(RuntimeError):
    """A handshake that did not give SRTP keys, or an answer we cannot use."""


def fingerprint(certificate: x509.Certificate) -> str:
    """sha-256 digest as a=fingerprint writes it (RFC 8122 §5): upper hex, colons."""
    return certificate.fingerprint(hashes.SHA256()).hex(":").upper()


@dataclass(frozen=True)
class AnswerSide:
    """The server's transport in its answer: ICE credentials, its candidate, its
    certificate's sha-256 fingerprint, and a=setup (who opens the DTLS handshake)."""

    ufrag: str
    pwd: str
    address: Address
    fingerprint: str
    setup: str

    @classmethod
    def parse(cls, sdp: bytes) -> AnswerSide:
        text = sdp.decode(errors="replace")

        def value(name: str) -> str:
            found = re.search(rf"^a={name}:(.*?)\s*$", text, re.MULTILINE)
            if found is None:
                raise WebRtcFailure(f"answer without a={name}")
            return found.group(1)

        candidate = value("candidate").split()
        algorithm, _, digest = value("fingerprint").partition(" ")
        if algorithm.lower() != "sha-256":
            raise WebRtcFailure(f"fingerprint in {algorithm}, not sha-256")
        return cls(
            ufrag=value("ice-ufrag"),
            pwd=value("ice-pwd"),
            address=(candidate[4], int(candidate[5])),
            fingerprint=digest.strip().upper(),
            setup=value("setup").lower(),
        )


@dataclass(frozen=True)
class SrtpSessions:
    """What the handshake gives a call: the browser's outbound and inbound SRTP."""

    outbound: pylibsrtp.Session
    inbound: pylibsrtp.Session


class WebRtcPeer:
    """One browser's audio transport. `send` puts a datagram on the browser's socket;
    the socket's reader hands this peer what comes from the server's address
    (`datagram`). `keyed` resolves to the SRTP sessions, or fails."""

    def __init__(self, port: int, send: Callable[[bytes, Address], None]) -> None:
        self.port = port
        self.ufrag = "".join(secrets.choice(_ICE_CHARS) for _ in range(4))
        self.pwd = "".join(secrets.choice(_ICE_CHARS) for _ in range(22))
        self.remote: AnswerSide | None = None
        self._send = send
        self._dtls: SSL.Connection | None = None
        self._check: bytes = b""
        self._answered = False
        self._timer: asyncio.TimerHandle | None = None
        self.keyed: asyncio.Future[SrtpSessions] = asyncio.get_running_loop().create_future()

    def offer(self, payload_type: int, rtpmap: str, fmtp: str = "") -> bytes:
        """The SDP offer: one audio stream with one codec, as a browser whose codec
        preferences were set to it (RTCRtpTransceiver.setCodecPreferences)."""
        lines = [
            "v=0",
            f"o=- {secrets.randbelow(1 << 62)} 2 IN IP4 127.0.0.1",
            "s=-",
            "t=0 0",
            "a=group:BUNDLE 0",
            "a=msid-semantic: WMS",
            f"m=audio {self.port} UDP/TLS/RTP/SAVPF {payload_type}",
            f"c=IN IP4 {LOOPBACK}",
            "a=rtcp:9 IN IP4 0.0.0.0",
            f"a=candidate:1 1 udp {HOST_PRIORITY} {LOOPBACK} {self.port} typ host",
            f"a=ice-ufrag:{self.ufrag}",
            f"a=ice-pwd:{self.pwd}",
            "a=ice-options:trickle",
            f"a=fingerprint:{identity().fingerprint}",
            "a=setup:actpass",
            "a=mid:0",
            "a=sendrecv",
            "a=rtcp-mux",
            f"a=rtpmap:{payload_type} {rtpmap}",
            *([f"a=fmtp:{payload_type} {fmtp}"] if fmtp else []),
        ]
        return ("\r\n".join(lines) + "\r\n").encode()

    def answered(self, sdp: bytes) -> None:
        """Take the server's answer and start the connectivity check."""
        self.remote = AnswerSide.parse(sdp)
        request = stun.Message(stun.Method.BINDING, stun.Class.REQUEST)
        request.attributes["USERNAME"] = f"{self.remote.ufrag}:{self.ufrag}"
        request.attributes["PRIORITY"] = CHECK_PRIORITY
        request.attributes["ICE-CONTROLLING"] = secrets.randbits(64)
        request.attributes["USE-CANDIDATE"] = None
        request.add_message_integrity(self.remote.pwd.encode())
        request.add_fingerprint()
        self._check = bytes(request)
        self._checking(CHECK_ATTEMPTS)

    def datagram(self, data: bytes) -> None:
        """A datagram from the server's candidate: STUN (first byte 0-3) or DTLS
        (20-63), told apart as RFC 7983 §7 does; anything else is not ours yet."""
        first = data[0] if data else 0
        if first < 4:
            self._stun(data)
        elif 20 <= first < 64 and self._dtls is not None:
            self._dtls.bio_write(data)
            self._handshake()

    def close(self) -> None:
        self._cancel_timer()
        if not self.keyed.done():
            self.keyed.cancel()

    # --- ICE ----------------------------------------------------------------------------

    def _checking(self, attempts: int) -> None:
        self._timer = None
        if self._answered or self.keyed.done():
            return
        if attempts == 0:
            self._fail("no answer to the ICE connectivity check")
            return
        assert self.remote is not None
        self._send(self._check, self.remote.address)
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(CHECK_INTERVAL_S, self._checking, attempts - 1)

    def _stun(self, data: bytes) -> None:
        assert self.remote is not None
        try:
            message = stun.parse_message(data)
        except ValueError:
            return
        if message.message_class == stun.Class.ERROR:
            self._fail(f"ICE check refused: {message.attributes.get('ERROR-CODE')}")
            return
        if self._answered or message.message_class != stun.Class.RESPONSE:
            return
        if not message.check_message_integrity(self.remote.pwd.encode()):
            return
        self._answered = True
        self._cancel_timer()
        self._start_dtls()

    # --- DTLS-SRTP ------------------------------------------------------------------------

    def _start_dtls(self) -> None:
        assert self.remote is not None
        context = SSL.Context(SSL.DTLS_METHOD)
        context.set_options(SSL.OP_NO_TICKET)
        # Self-signed on both sides: the fingerprint check after the handshake decides.
        context.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, lambda *args: True)
        context.use_certificate(identity().certificate)
        context.use_privatekey(identity().key)
        context.set_tlsext_use_srtp(b":".join(PROFILES))
        self._dtls = SSL.Connection(context, None)
        # The server answered actpass with active (RFC 5763 §5): the browser waits for
        # its ClientHello; answered with passive, the browser opens the handshake.
        if self.remote.setup == "passive":
            self._dtls.set_connect_state()
            self._handshake()
        else:
            self._dtls.set_accept_state()

    def _handshake(self) -> None:
        assert self._dtls is not None
        if self.keyed.done():
            return
        try:
            self._dtls.do_handshake()
        except SSL.WantReadError:
            self._flush()
            return
        except SSL.Error as exc:
            self._fail(f"DTLS handshake failed: {exc}")
            return
        self._flush()
        self._established()

    def _established(self) -> None:
        assert self._dtls is not None and self.remote is not None
        self._cancel_timer()
        peer = self._dtls.get_peer_certificate(as_cryptography=True)
        if peer is None or fingerprint(peer) != self.remote.fingerprint:
            self._fail("the server's certificate is not its a=fingerprint")
            return
        profile = PROFILES.get(self._dtls.get_selected_srtp_profile())
        if profile is None:
            self._fail("no SRTP profile agreed in DTLS")
            return
        material = self._dtls.export_keying_material(EXPORTER_LABEL, 2 * (KEY + SALT))
        client = material[:KEY] + material[2 * KEY : 2 * KEY + SALT]
        server = material[KEY : 2 * KEY] + material[2 * KEY + SALT :]
        ours, theirs = (client, server) if self.remote.setup == "passive" else (server, client)
        self.keyed.set_result(
            SrtpSessions(
                pylibsrtp.Session(
                    pylibsrtp.Policy(ours, pylibsrtp.Policy.SSRC_ANY_OUTBOUND, profile)
                ),
                pylibsrtp.Session(
                    pylibsrtp.Policy(theirs, pylibsrtp.Policy.SSRC_ANY_INBOUND, profile)
                ),
            )
        )

    def _flush(self) -> None:
        """Send what OpenSSL wrote, and wake up for its retransmission timer."""
        assert self._dtls is not None and self.remote is not None
        while True:
            try:
                data = self._dtls.bio_read(DATAGRAM)
            except SSL.WantReadError:
                break
            self._send(data, self.remote.address)
        self._cancel_timer()
        timeout = self._dtls.DTLSv1_get_timeout()
        if timeout is not None and not self.keyed.done():
            self._timer = asyncio.get_running_loop().call_later(timeout, self._retransmit)

    def _retransmit(self) -> None:
        self._timer = None
        if self._dtls is not None and not self.keyed.done():
            self._dtls.DTLSv1_handle_timeout()
            self._flush()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _fail(self, reason: str) -> None:
        self._cancel_timer()
        if not self.keyed.done():
            self.keyed.set_exception(WebRtcFailure(reason))
