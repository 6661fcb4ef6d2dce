"""Codec registry: the list SDP negotiation reads, and encoder/decoder factories.

Adding a codec means one new module and one entry in _FACTORIES (and in
CODECS, at its place in our order of preference).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import cache, partial

from ipbx.media.codecs import g729
from ipbx.media.codecs.base import Codec, Decoder, Encoder, Pcm
from ipbx.media.codecs.g711 import (
    PCMA,
    PCMU,
    pcma_decoder,
    pcma_encoder,
    pcmu_decoder,
    pcmu_encoder,
)
from ipbx.media.codecs.g722 import G722, G722Decoder, G722Encoder
from ipbx.media.codecs.g729 import G729
from ipbx.media.codecs.opus import OPUS, OpusDecoder, OpusEncoder

# RFC 4733 §7.1.1: telephone-event has no static payload type; 101 is the
# de facto default (Cisco, Asterisk, FreeSWITCH all offer it there).
TELEPHONE_EVENT = Codec("telephone-event", 101, 8000)

# Payload formats that carry no audio of their own, wherever an m= line puts them: DTMF
# events (RFC 4733), comfort noise (RFC 3389), redundancy (RFC 2198), forward error
# correction (RFC 5109 ulpfec, RFC 8627 flexfec, RFC 3009 parityfec), retransmission
# (RFC 4588). By lower-case name: encoding names are case-insensitive (RFC 4855 §3).
NOT_AUDIO_CODECS = frozenset(
    {"telephone-event", "cn", "red", "ulpfec", "flexfec", "parityfec", "rtx"}
)

# RFC 3551 §6: the static audio payload types, which an m= line may list without rtpmap.
STATIC_FORMATS = {
    c.payload_type: c
    for c in (
        PCMU,
        Codec("GSM", 3, 8000),
        Codec("G723", 4, 8000),
        PCMA,
        G722,
        Codec("CN", 13, 8000),
        G729,
    )
}

# An encoder factory takes the fmtp parameters the peer sent for the format
# (RFC 4566 §6 a=fmtp), which say how the peer wants to receive it.
Fmtp = Mapping[str, str]
# Each factory is also told the PCM rate of the audio's other end, if known: a codec that
# can run at several rates (Opus) takes the one that needs no resampling.
_Factories = tuple[Callable[[Fmtp, int | None], Encoder], Callable[[int | None], Decoder]]


def playback_rate(fmtp: Fmtp) -> int:
    """RFC 7587 §6.1 maxplaybackrate: the highest rate the receiver plays Opus back at,
    8000 to 48000 Hz; absent or out of that range, 48000 (no limit)."""
    value = fmtp.get("maxplaybackrate", "")
    rate = int(value) if value.isdigit() else OPUS.clock_rate
    return rate if 8000 <= rate <= OPUS.clock_rate else OPUS.clock_rate


_FACTORIES: dict[str, _Factories] = {
    "opus": (
        lambda fmtp, rate: OpusEncoder(
            fec=fmtp.get("useinbandfec") == "1", rate=rate, playback_rate=playback_rate(fmtp)
        ),
        lambda rate: OpusDecoder(rate),
    ),
    "g722": (lambda fmtp, rate: G722Encoder(), lambda rate: G722Decoder()),
    "pcmu": (lambda fmtp, rate: pcmu_encoder(), lambda rate: pcmu_decoder()),
    "pcma": (lambda fmtp, rate: pcma_encoder(), lambda rate: pcma_decoder()),
}


_BCG729 = g729.load()
if _BCG729 is not None:
    _FACTORIES["g729"] = (
        partial(lambda library, fmtp, rate: g729.G729Encoder(library), _BCG729),
        partial(lambda library, rate: g729.G729Decoder(library), _BCG729),
    )

# Every audio codec we can encode and decode (transcoding reads this), in our
# order of preference: wideband first (Opus, then G.722), then the G.711 every
# phone has, and G.729 last (8 kbit/s narrowband, for peers with nothing else).
CODECS: tuple[Codec, ...] = (OPUS, G722, PCMU, PCMA) + ((G729,) if _BCG729 else ())

# What ipbx offers of its own where it terminates media and the phone made no offer (a
# late offer to a call flow or the echo test), and what `ipbx phone` speaks: G.711, as
# long as our offers carry telephone-event at 8 kHz only (RFC 4733 §2.1 would have it at
# 48 kHz beside Opus). A phone's offer is answered with its G.711 first (pbx/call/local.py).
AUDIO_CODECS: tuple[Codec, ...] = (PCMU, PCMA)


class CodecError(LookupError):
    """No encoder or decoder for a payload format."""


def create_encoder(codec: Codec, fmtp: Fmtp | None = None, rate: int | None = None) -> Encoder:
    """An encoder of `codec` for a peer that asked for `fmtp`, fed audio that comes at
    `rate` (its `pcm_rate` is that rate where the codec can run at it)."""
    return _factories(codec)[0](fmtp or {}, rate)


def create_decoder(codec: Codec, rate: int | None = None) -> Decoder:
    """A decoder of `codec` whose audio goes on at `rate` (see create_encoder)."""
    return _factories(codec)[1](rate)


def pcm_rate(codec: Codec) -> int:
    """The rate of `codec`'s audio when nothing asks for another (Opus: 48 kHz)."""
    return _native_rate(codec.name.lower())


@cache
def _native_rate(name: str) -> int:
    return _factories_named(name)[1](None).pcm_rate


def _factories(codec: Codec) -> _Factories:
    return _factories_named(codec.name.lower())


def _factories_named(name: str) -> _Factories:
    try:
        return _FACTORIES[name]
    except KeyError:
        raise CodecError(f"no audio encoder/decoder for {name}") from None


__all__ = [
    "AUDIO_CODECS",
    "CODECS",
    "G722",
    "G729",
    "OPUS",
    "PCMA",
    "PCMU",
    "TELEPHONE_EVENT",
    "Codec",
    "CodecError",
    "Decoder",
    "Encoder",
    "Fmtp",
    "Pcm",
    "create_decoder",
    "create_encoder",
]
