"""WebRTC media on a leg's own RTP socket: ICE-lite, DTLS-SRTP and rtcp-mux.

A WebRTC leg is an ordinary MediaEndpoint (same bridges, codecs, recorder, meters);
only what reaches its RTP socket differs. RFC 7983 §7 tells the packets apart by their
first byte, and `WebRtcTransport.received` takes those that are not RTP:

- STUN (0-3): ipbx is an ICE-lite agent (RFC 8445 §2.5): it offers one host candidate,
  its media address, and only answers the browser's Binding requests, checked against
  our ice-ufrag and ice-pwd (MESSAGE-INTEGRITY, RFC 8489 §14.5). The browser's address
  is the source of the check it nominates (USE-CANDIDATE) — or of the first valid check
  until then. Its candidates in SDP, host or mDNS `.local` names (RFC 8839 and the
  mDNS ICE candidates draft), are never used: the checks come from the browser itself,
  so a `.local` name needs no resolving.
- DTLS (20-63): one handshake (RFC 5763, 5764) through OpenSSL (pyOpenSSL, as aiortc's
  RTCDtlsTransport does), ipbx as client or server as a=setup decided. The peer's
  certificate must match its a=fingerprint; then the use_srtp extractor's keys
  (RFC 5764 §4.2) become the endpoint's SrtpContext (pylibsrtp), as SDES keys do.
- RTCP (RFC 5761 rtcp-mux): on the RTP port, handed to the endpoint's RTCP channel.

No media leaves before the keys exist: the endpoint's peer is set once DTLS is done,
and RTP received before that is dropped. STUN messages come from aioice, DTLS from
OpenSSL, SRTP from libsrtp: none is written here.
"""

from __future__ import annotations

import asyncio
import datetime
import functools
import logging
import secrets
import string
import struct
from collections.abc import Callable
from dataclasses import dataclass

from aioice import stun
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from OpenSSL import SSL

from ipbx.media.channel import Address, Channel
from ipbx.media.rtp import is_rtcp
from ipbx.media.srtp import (
    AES_CM_128_HMAC_SHA1_32,
    AES_CM_128_HMAC_SHA1_80,
    CryptoAttribute,
    SrtpContext,
)

log = logging.getLogger(__name__)

# RFC 5764 §4.1.2 profile names (OpenSSL's) and the SDES suite with the same transforms.
_PROFILES = {
    b"SRTP_AES128_CM_SHA1_80": AES_CM_128_HMAC_SHA1_80,
    b"SRTP_AES128_CM_SHA1_32": AES_CM_128_HMAC_SHA1_32,
}
_KEY, _SALT = 16, 14
# RFC 5764 §4.2: the exporter label, and its output laid out as
# client key | server key | client salt | server salt.
_EXPORTER_LABEL = b"EXTRACTOR-dtls_srtp"
_DIGESTS: dict[str, hashes.HashAlgorithm] = {
    "sha-256": hashes.SHA256(),
    "sha-384": hashes.SHA384(),
    "sha-512": hashes.SHA512(),
}
# RFC 8839 §5.4: ice-char is ALPHA / DIGIT / "+" / "/"; a ufrag of at least 4
# characters and a password of at least 22 (24 and 128 random bits here).
_ICE_CHARS = string.ascii_letters + string.digits + "+/"
_DTLS_DATAGRAM = 1500
# DTLS records kept while the browser's answer is on its way: its ClientHello can come
# before its SIP 200 OK does, and would otherwise wait for a retransmission.
_EARLY_RECORDS = 4


class WebRtcError(ValueError):
    """A browser's WebRTC parameters we cannot use."""


def _fingerprint(certificate: x509.Certificate, algorithm: str) -> str:
    digest = certificate.fingerprint(_DIGESTS[algorithm]).hex().upper()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


@dataclass(frozen=True, slots=True)
class Certificate:
    """ipbx's DTLS identity: a self-signed ECDSA P-256 certificate, as browsers make
    theirs (RFC 8827 §6.5: the fingerprint in SDP, not a CA, vouches for it)."""

    key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate

    @property
    def fingerprint(self) -> str:
        """The a=fingerprint value (RFC 8122 §5): algorithm and digest."""
        return f"sha-256 {_fingerprint(self.certificate, 'sha-256')}"


@functools.cache
def certificate() -> Certificate:
    """The certificate of this process, made on first use (every leg shares it)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "ipbx")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=365))
        .sign(key, hashes.SHA256())
    )
    return Certificate(key, cert)


@dataclass(frozen=True, slots=True)
class IceCredentials:
    ufrag: str
    pwd: str

    @classmethod
    def new(cls) -> IceCredentials:
        def chars(count: int) -> str:
            return "".join(secrets.choice(_ICE_CHARS) for _ in range(count))

        return cls(chars(4), chars(22))


@dataclass(frozen=True, slots=True)
class WebRtcParameters:
    """What a browser's SDP says of its transport: ICE credentials, certificate
    fingerprints (algorithm, digest), a=setup (RFC 4145: active, passive, actpass) and
    the audio stream's a=mid (RFC 8843), which our SDP must repeat."""

    ufrag: str
    pwd: str
    fingerprints: tuple[tuple[str, str], ...]
    setup: str
    mid: str | None = None

    @property
    def dtls_client(self) -> bool:
        """Whether ipbx opens the DTLS handshake: the browser waits (passive), or lets
        us choose (actpass, an offer) and RFC 5763 §5 recommends the answerer be
        active, so the handshake runs in parallel with the answer."""
        return self.setup in ("actpass", "passive")


class WebRtcTransport:
    """ICE-lite and DTLS-SRTP on one endpoint's RTP channel, and its RTCP muxed there.
    `on_keys` gets the SRTP context once the handshake is verified; the RTP channel's
    peer is set to the browser's address then, and not before."""

    def __init__(self, rtp: Channel, rtcp: Channel, on_keys: Callable[[SrtpContext], None]) -> None:
        self.local = IceCredentials.new()
        self.remote: WebRtcParameters | None = None
        self._rtp, self._rtcp = rtp, rtcp
        self._on_keys = on_keys
        self._address: Address | None = None
        self._nominated = False
        self._dtls: SSL.Connection | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._early: list[bytes] = []
        # Our DTLS role (True: ipbx opens the handshake), decided with the association
        # and kept with it: None until then.
        self.client: bool | None = None
        self.keyed = False
        self.failed = False
        rtp.demux = self.received
        rtcp.mux = rtp

    @property
    def setup(self) -> str:
        """Our a=setup: actpass in a first offer, else the role of the association,
        which the answer to a later offer keeps: a browser's re-offer says actpass
        again, and it refuses an answer that would turn its DTLS role round."""
        if self.client is None:
            return "actpass"
        return "active" if self.client else "passive"

    def start(self, remote: WebRtcParameters) -> None:
        """Apply the browser's parameters (every SDP it sends). New ICE credentials are
        an ICE restart, answered with new ones of ours (RFC 8445 §9); the DTLS
        association, and ipbx's role in it, stay unless the certificate changed."""
        old, self.remote = self.remote, remote
        if old is not None and (old.ufrag, old.pwd) != (remote.ufrag, remote.pwd):
            self.local = IceCredentials.new()
            self._nominated = False
        if old is not None and old.fingerprints == remote.fingerprints:
            return
        self._stop_dtls()
        self.keyed = self.failed = False
        context = SSL.Context(SSL.DTLS_METHOD)
        context.set_options(SSL.OP_NO_TICKET)
        # Self-signed on both sides: the fingerprint check after the handshake decides.
        context.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, lambda *args: True)
        identity = certificate()
        context.use_certificate(identity.certificate)
        context.use_privatekey(identity.key)
        context.set_tlsext_use_srtp(b":".join(_PROFILES))
        self._dtls = SSL.Connection(context, None)
        early, self._early = self._early, []
        self.client = remote.dtls_client
        if self.client:
            self._dtls.set_connect_state()
            if self._address is not None:
                self._handshake()
        else:
            self._dtls.set_accept_state()
            for record in early:
                self._dtls.bio_write(record)
            if early:
                self._handshake()

    def close(self) -> None:
        self._stop_dtls()
        self._rtp.demux = self._rtcp.mux = None

    def received(self, data: bytes, addr: Address) -> bool:
        """The RTP channel's demultiplexer (RFC 7983): True when the datagram was
        STUN, DTLS, muxed RTCP or media before the keys, taken or dropped here."""
        first = data[0] if data else 0
        if first < 4:
            self._stun(data, addr)
        elif 20 <= first < 64:
            self._dtls_record(data, addr)
        elif not self.keyed:
            return True
        elif is_rtcp(data):
            self._rtcp.datagram_received(data, addr)
        else:
            return False
        return True

    # --- ICE-lite ---------------------------------------------------------------------

    def _stun(self, data: bytes, addr: Address) -> None:
        try:
            message = stun.parse_message(data)
        except (ValueError, IndexError, KeyError, struct.error):
            return  # not STUN after all, or malformed: dropped, as any stray datagram
        if message.message_method != stun.Method.BINDING:
            return
        if message.message_class != stun.Class.REQUEST:
            return  # a lite agent sends no checks, so expects no responses
        username = message.attributes.get("USERNAME", "")
        pwd = self.local.pwd.encode()
        if not username.startswith(self.local.ufrag + ":"):
            self._refuse(message, addr, (401, "Unauthenticated"))
            return
        if not message.check_message_integrity(pwd):
            self._refuse(message, addr, (401, "Unauthenticated"))
            return
        response = stun.Message(
            stun.Method.BINDING, stun.Class.RESPONSE, transaction_id=message.transaction_id
        )
        response.attributes["XOR-MAPPED-ADDRESS"] = (addr[0], addr[1])
        response.add_message_integrity(pwd)
        self._send(bytes(response), addr)
        # RFC 8445 §7.3.1.5, §8.2: the controlling agent's USE-CANDIDATE selects the pair.
        nominating = "USE-CANDIDATE" in message.attributes
        if self._address is None or (nominating and not self._nominated):
            self._select(addr)
        self._nominated = self._nominated or nominating

    def _refuse(self, request: stun.Message, addr: Address, error: tuple[int, str]) -> None:
        # RFC 8489 §9.1.3: an unauthenticated request's error is not signed.
        response = stun.Message(
            request.message_method, stun.Class.ERROR, transaction_id=request.transaction_id
        )
        response.attributes["ERROR-CODE"] = error
        response.add_fingerprint()
        self._send(bytes(response), addr)

    def _select(self, addr: Address) -> None:
        first = self._address is None
        self._address = addr
        if self.keyed:
            self._rtp.set_peer(addr)
        elif first and self.client:
            self._handshake()

    # --- DTLS -------------------------------------------------------------------------

    def _dtls_record(self, data: bytes, addr: Address) -> None:
        # Only a valid ICE check tells where the browser is (RFC 8445 §7.3): DTLS from
        # anywhere else is not answered.
        if addr != self._address:
            return
        if self._dtls is None:
            if self.remote is None and len(self._early) < _EARLY_RECORDS:
                self._early.append(data)
            return
        self._dtls.bio_write(data)
        if not self.keyed:
            self._handshake()
            return
        try:
            self._dtls.recv(_DTLS_DATAGRAM)
        except SSL.ZeroReturnError:
            log.info("DTLS closed by the browser at %s", addr)
        except SSL.Error:
            pass  # no application data runs over this association
        self._flush()

    def _handshake(self) -> None:
        assert self._dtls is not None
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
        peer = self._dtls.get_peer_certificate(as_cryptography=True)
        if peer is None or not _matches(peer, self.remote.fingerprints):
            self._fail("the browser's DTLS certificate does not match its a=fingerprint")
            return
        profile = self._dtls.get_selected_srtp_profile()
        suite = _PROFILES.get(profile)
        if suite is None:
            self._fail(f"no SRTP profile agreed in DTLS (got {profile!r})")
            return
        material = self._dtls.export_keying_material(_EXPORTER_LABEL, 2 * (_KEY + _SALT))
        client = material[:_KEY] + material[2 * _KEY : 2 * _KEY + _SALT]
        server = material[_KEY : 2 * _KEY] + material[2 * _KEY + _SALT :]
        ours, theirs = (client, server) if self.client else (server, client)
        self.keyed = True
        self._cancel_timer()
        self._on_keys(
            SrtpContext(CryptoAttribute(1, suite, ours), CryptoAttribute(1, suite, theirs))
        )
        assert self._address is not None
        self._rtp.set_peer(self._address)
        log.info("DTLS-SRTP (%s) up with %s", suite, self._address)

    def _fail(self, reason: str) -> None:
        log.warning("WebRTC leg: %s", reason)
        self.failed = True
        self._stop_dtls()

    def _flush(self) -> None:
        """Send what OpenSSL wrote, and wake up for its retransmission timer."""
        if self._dtls is None:
            return
        while True:
            try:
                data = self._dtls.bio_read(_DTLS_DATAGRAM)
            except SSL.WantReadError:
                break
            if self._address is not None:
                self._send(data, self._address)
        self._cancel_timer()
        timeout = None if self.keyed else self._dtls.DTLSv1_get_timeout()
        if timeout is not None:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(timeout, self._retransmit)

    def _retransmit(self) -> None:
        self._timer = None
        if self._dtls is not None and not self.keyed:
            self._dtls.DTLSv1_handle_timeout()
            self._flush()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _stop_dtls(self) -> None:
        self._cancel_timer()
        self._dtls = None

    def _send(self, data: bytes, addr: Address) -> None:
        self._rtp.sendto(data, addr)


def _matches(peer: x509.Certificate, fingerprints: tuple[tuple[str, str], ...]) -> bool:
    """RFC 8122 §5: every fingerprint with a hash we know must match, and one must."""
    known = [(a.lower(), d.upper()) for a, d in fingerprints if a.lower() in _DIGESTS]
    return bool(known) and all(_fingerprint(peer, a) == d for a, d in known)
