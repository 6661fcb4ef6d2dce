"""SRTP keyed by SDES: the SDP crypto attribute (RFC 4568) and packet protection (RFC 3711).

ipbx.sdp finds the a=crypto lines and hands their values here; the endpoint gets an
SrtpContext and wraps a channel sink with protecting() or unprotecting(), so the
relay never learns libsrtp (pylibsrtp does the cryptography).
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass

import pylibsrtp

from ipbx.media.channel import Sink
from ipbx.media.rtp import is_rtcp

log = logging.getLogger(__name__)

AES_CM_128_HMAC_SHA1_80 = "AES_CM_128_HMAC_SHA1_80"
AES_CM_128_HMAC_SHA1_32 = "AES_CM_128_HMAC_SHA1_32"
# RFC 4568 §6.2.1, §6.2.2: the libsrtp profile and the SRTP authentication tag in octets.
_SUITES: dict[str, tuple[int, int]] = {
    AES_CM_128_HMAC_SHA1_80: (pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80, 10),
    AES_CM_128_HMAC_SHA1_32: (pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_32, 4),
}
# Our preference when answering, strongest authentication first.
SUITES = tuple(_SUITES)
# Both suites: a 128-bit master key followed by a 112-bit master salt (RFC 4568 §6.2).
KEY_SALT_LENGTH = 30
# RFC 4568 §6.2.2: _32 shortens only the SRTP tag; SRTCP keeps RFC 3711's 80 bits.
_SRTCP_TAG_LENGTH = 10

# RFC 4568 §9.1/§9.2 grammar: tag = 1*9DIGIT, lifetime = ["2^"] 1*DIGIT,
# mki = mki-value ":" mki-length with mki-length 1*3DIGIT in 1..128.
_TAG = re.compile(r"[0-9]{1,9}")
_LIFETIME = re.compile(r"(2\^)?([0-9]{1,20})")
_MKI = re.compile(r"([0-9]{1,309}):([0-9]{1,3})")
_MAX_MKI_LENGTH = 128


class CryptoError(ValueError):
    """An a=crypto value that is malformed or that we cannot use."""


class SrtpError(ValueError):
    """A packet libsrtp refused (authentication failure, replay, bad MKI): count and drop it."""


@dataclass(frozen=True, slots=True)
class Mki:
    """Master Key Identifier: carried in every packet as `length` big-endian octets."""

    value: int
    length: int

    def __post_init__(self) -> None:
        if not 1 <= self.length <= _MAX_MKI_LENGTH:
            raise CryptoError(f"MKI length {self.length} is outside 1..{_MAX_MKI_LENGTH}")
        if self.value >= 1 << (8 * self.length):
            raise CryptoError(f"MKI {self.value} does not fit in {self.length} octets")

    def __bytes__(self) -> bytes:
        return self.value.to_bytes(self.length, "big")


@dataclass(frozen=True, slots=True)
class CryptoAttribute:
    """The value of a=crypto:<tag> <suite> inline:<key||salt>[|lifetime][|MKI:len] [params]."""

    tag: int
    suite: str
    key: bytes
    """Master key followed by master salt (RFC 4568 §6.1)."""
    lifetime: int | None = None
    """Packets the key may protect (RFC 4568 §6.1); None is the suite's maximum."""
    mki: Mki | None = None
    session_params: tuple[str, ...] = ()
    """RFC 4568 §6.3 parameters (KDR=, WSH= ...), kept verbatim."""

    def __post_init__(self) -> None:
        if not 0 <= self.tag <= 999_999_999:
            raise CryptoError(f"crypto tag {self.tag} is not 1 to 9 digits")
        if self.suite not in _SUITES:
            raise CryptoError(f"unsupported crypto suite {self.suite!r}")
        if len(self.key) != KEY_SALT_LENGTH:
            raise CryptoError(
                f"{self.suite} needs {KEY_SALT_LENGTH} octets of key and salt, got {len(self.key)}"
            )
        if self.lifetime is not None and self.lifetime < 1:
            raise CryptoError("key lifetime must be at least one packet")

    @classmethod
    def parse(cls, value: str) -> CryptoAttribute:
        """Parse what follows "a=crypto:"; raises CryptoError naming what is wrong."""
        fields = value.split()
        if len(fields) < 3:
            raise CryptoError(f"a=crypto needs a tag, a suite and key parameters: {value!r}")
        tag, suite, key_params, *session_params = fields
        if not _TAG.fullmatch(tag):
            raise CryptoError(f"crypto tag {tag!r} is not 1 to 9 digits")
        if ";" in key_params:
            # Several keys only make sense with MKIs and re-keying, which we do not do.
            raise CryptoError("more than one master key in one a=crypto is not supported")
        method, colon, info = key_params.partition(":")
        if not colon or method.lower() != "inline":
            raise CryptoError(f"key method must be inline: {key_params!r}")
        key_salt, *extras = info.split("|")
        lifetime = None
        if extras and ":" not in extras[0]:
            lifetime = _parse_lifetime(extras.pop(0))
        mki = _parse_mki(extras.pop(0)) if extras else None
        if extras:
            raise CryptoError(f"unexpected key parameter {extras[0]!r}")
        return cls(int(tag), suite, _decode_key(key_salt), lifetime, mki, tuple(session_params))

    def __str__(self) -> str:
        inline = "inline:" + base64.b64encode(self.key).decode()
        if self.lifetime is not None:
            exponent = self.lifetime.bit_length() - 1
            power = self.lifetime == 1 << exponent
            inline += f"|2^{exponent}" if power else f"|{self.lifetime}"
        if self.mki is not None:
            inline += f"|{self.mki.value}:{self.mki.length}"
        return " ".join([str(self.tag), self.suite, inline, *self.session_params])


def _decode_key(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error as exc:
        raise CryptoError(f"key is not valid base64: {exc}") from exc


def _parse_lifetime(text: str) -> int:
    match = _LIFETIME.fullmatch(text)
    if match is None:
        raise CryptoError(f"malformed key lifetime {text!r}")
    number = int(match.group(2))
    if match.group(1) is None:
        return number
    if number > 64:
        raise CryptoError(f"key lifetime {text!r} is beyond any SRTP limit")
    return 1 << number


def _parse_mki(text: str) -> Mki:
    match = _MKI.fullmatch(text)
    if match is None:
        raise CryptoError(f"malformed MKI {text!r} (expected value:length)")
    return Mki(int(match.group(1)), int(match.group(2)))


def new_crypto(tag: int, suite: str = AES_CM_128_HMAC_SHA1_80) -> CryptoAttribute:
    """A fresh random master key and salt (from `secrets`) for a new offer or answer."""
    return CryptoAttribute(tag, suite, secrets.token_bytes(KEY_SALT_LENGTH))


def choose_crypto(offered: list[CryptoAttribute]) -> CryptoAttribute | None:
    """The answerer's a=crypto: our preferred suite among the offered, with our own key.

    RFC 4568 §5.1.2 and §7.1.2: the answer repeats the accepted attribute's tag and
    suite and carries the answerer's key, used for what the answerer sends. We
    implement none of the §6.3 session parameters, so attributes with any are passed over.
    """
    for suite in SUITES:
        for crypto in offered:
            if crypto.suite == suite and not crypto.session_params:
                return new_crypto(crypto.tag, suite)
    return None


class SrtpContext:
    """Both directions of one SRTP leg: what we send under `local`, receive under `remote`.

    The RTP and RTCP sockets of a leg share one context (RFC 3711 §4.3: SRTCP keys
    derive from the same master key). `dropped` counts packets the adapters dropped.
    """

    def __init__(self, local: CryptoAttribute, remote: CryptoAttribute) -> None:
        if local.session_params or remote.session_params:
            raise CryptoError("SRTP session parameters (RFC 4568 §6.3) are not supported")
        self._outbound = _session(local, pylibsrtp.Policy.SSRC_ANY_OUTBOUND)
        self._inbound = _session(remote, pylibsrtp.Policy.SSRC_ANY_INBOUND)
        self._local_mki = b"" if local.mki is None else bytes(local.mki)
        self._remote_mki = b"" if remote.mki is None else bytes(remote.mki)
        self._local_tag = _SUITES[local.suite][1]
        self._remote_tag = _SUITES[remote.suite][1]
        self.dropped = 0

    def protect(self, rtp: bytes) -> bytes:
        packet = _call(self._outbound.protect, rtp)
        return _insert_mki(packet, self._local_mki, self._local_tag)

    def unprotect(self, srtp: bytes) -> bytes:
        packet = _strip_mki(srtp, self._remote_mki, self._remote_tag)
        return _call(self._inbound.unprotect, packet)

    def protect_rtcp(self, rtcp: bytes) -> bytes:
        packet = _call(self._outbound.protect_rtcp, rtcp)
        return _insert_mki(packet, self._local_mki, _SRTCP_TAG_LENGTH)

    def unprotect_rtcp(self, srtcp: bytes) -> bytes:
        packet = _strip_mki(srtcp, self._remote_mki, _SRTCP_TAG_LENGTH)
        return _call(self._inbound.unprotect_rtcp, packet)


def _session(crypto: CryptoAttribute, ssrc_type: int) -> pylibsrtp.Session:
    # Any SSRC: a bridged leg relays whatever SSRC the other side uses, and a
    # re-INVITE may bring a new one; libsrtp keeps one stream (and replay window) per SSRC.
    policy = pylibsrtp.Policy(
        key=crypto.key, ssrc_type=ssrc_type, srtp_profile=_SUITES[crypto.suite][0]
    )
    return pylibsrtp.Session(policy)


def _call(process: Callable[[bytes], bytes], data: bytes) -> bytes:
    try:
        return process(data)
    except (pylibsrtp.Error, ValueError) as exc:
        raise SrtpError(str(exc)) from exc


# RFC 3711 §3.1 (Figure 1) and §3.4 (Figure 2): the MKI sits just before the
# authentication tag and outside the authenticated portion, so libsrtp can work
# on the packet without it and we add or remove it here.
def _insert_mki(packet: bytes, mki: bytes, tag_length: int) -> bytes:
    if not mki:
        return packet
    cut = len(packet) - tag_length
    return packet[:cut] + mki + packet[cut:]


def _strip_mki(packet: bytes, mki: bytes, tag_length: int) -> bytes:
    if not mki:
        return packet
    cut = len(packet) - tag_length - len(mki)
    if cut < 0 or packet[cut : cut + len(mki)] != mki:
        raise SrtpError("packet does not carry the negotiated MKI")
    return packet[:cut] + packet[cut + len(mki) :]


def protecting(context: SrtpContext, sink: Sink) -> Sink:
    """Wrap `sink` so that plain RTP/RTCP handed to it leaves as SRTP/SRTCP."""
    return _through(context, context.protect, context.protect_rtcp, sink, "protect")


def unprotecting(context: SrtpContext, sink: Sink) -> Sink:
    """Wrap `sink` so that SRTP/SRTCP handed to it arrives as plain RTP/RTCP.

    Packets failing authentication or the replay check (RFC 3711 §3.3.2) are dropped.
    """
    return _through(context, context.unprotect, context.unprotect_rtcp, sink, "unprotect")


def _through(
    context: SrtpContext,
    rtp: Callable[[bytes], bytes],
    rtcp: Callable[[bytes], bytes],
    sink: Sink,
    what: str,
) -> Sink:
    def pass_on(data: bytes) -> None:
        try:
            packet = rtcp(data) if is_rtcp(data) else rtp(data)
        except SrtpError as exc:
            context.dropped += 1
            log.debug("dropping a packet SRTP cannot %s: %s", what, exc)
            return
        sink(packet)

    return pass_on
