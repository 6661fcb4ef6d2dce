"""Codec registry: the list SDP negotiation reads, and encoder/decoder factories.

Adding a codec means one new module and one entry in _FACTORIES.
"""

from __future__ import annotations

from collections.abc import Callable

from ipbx.media.codecs.base import Codec, Decoder, Encoder, Pcm
from ipbx.media.codecs.g711 import (
    PCMA,
    PCMU,
    pcma_decoder,
    pcma_encoder,
    pcmu_decoder,
    pcmu_encoder,
)

# RFC 4733 §7.1.1: telephone-event has no static payload type; 101 is the
# de facto default (Cisco, Asterisk, FreeSWITCH all offer it there).
TELEPHONE_EVENT = Codec("telephone-event", 101, 8000)

# Audio codecs we can encode and decode, in our default order of preference.
AUDIO_CODECS: tuple[Codec, ...] = (PCMU, PCMA)

_FACTORIES: dict[str, tuple[Callable[[], Encoder], Callable[[], Decoder]]] = {
    "pcmu": (pcmu_encoder, pcmu_decoder),
    "pcma": (pcma_encoder, pcma_decoder),
}


class CodecError(LookupError):
    """No encoder or decoder for a payload format."""


def create_encoder(codec: Codec) -> Encoder:
    return _factories(codec)[0]()


def create_decoder(codec: Codec) -> Decoder:
    return _factories(codec)[1]()


def _factories(codec: Codec) -> tuple[Callable[[], Encoder], Callable[[], Decoder]]:
    try:
        return _FACTORIES[codec.name.lower()]
    except KeyError:
        raise CodecError(f"no audio encoder/decoder for {codec.name}") from None


__all__ = [
    "AUDIO_CODECS",
    "PCMA",
    "PCMU",
    "TELEPHONE_EVENT",
    "Codec",
    "CodecError",
    "Decoder",
    "Encoder",
    "Pcm",
    "create_decoder",
    "create_encoder",
]
