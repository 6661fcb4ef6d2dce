"""Which codec a call carries, as properties over generated offers and answers (RFC 3264
§6.1), through the offer/answer calls of the call engine (pbx/call/negotiate.py) on real
media endpoints: whatever the caller offers, and however the callee orders its answer
(telephone-event first, as baresip does; comfort noise, RED or FEC beside the codec;
encoding names in either case, RFC 4855 §3), every payload format in the SDP ipbx sends
the caller is one the caller offered, the codec of each leg is an audio codec, never
telephone-event, CN, RED or FEC, and the legs are transcoded only when their codecs
differ."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable

from hypothesis import event, given, settings
from hypothesis import strategies as st

from ipbx import sdp
from ipbx.media.bridge import relay, transcode
from ipbx.media.channel import ChannelPair
from ipbx.media.codecs import CODECS, NOT_AUDIO_CODECS, STATIC_FORMATS
from ipbx.media.endpoint import MediaEndpoint, close_pool
from ipbx.media.ports import PortPool
from ipbx.pbx.call.model import Call, Leg
from ipbx.pbx.call.negotiate import callee_offer, join
from ipbx.sip.errors import SipError
from ipbx.sip.transaction import Address
from tests.support.invites import invite

PBX = "127.0.0.1"
PHONE = Address("UDP", "127.0.0.1", 5062)

# (encoding, clock rate, channels, static payload type): what phones put in m= lines.
FORMATS = [
    ("opus", 48000, 2, None),
    ("G722", 8000, 1, 9),
    ("PCMU", 8000, 1, 0),
    ("PCMA", 8000, 1, 8),
    ("speex", 16000, 1, None),
    ("telephone-event", 8000, 1, None),
    ("telephone-event", 48000, 1, None),
    ("CN", 8000, 1, 13),
    ("red", 48000, 2, None),
    ("ulpfec", 8000, 1, None),
    ("flexfec", 8000, 1, None),
]
CASES: list[Callable[[str], str]] = [str, str.lower, str.upper]

Identity = tuple[str, int, int] | int


@st.composite
def offers(draw: st.DrawFn) -> bytes:
    """A phone's offer: some of FORMATS in any order, names in any case, dynamic payload
    types anywhere in 96-127, static ones with or without their rtpmap."""
    formats = draw(st.lists(st.sampled_from(FORMATS), min_size=1, max_size=6, unique=True))
    dynamic = iter(draw(st.permutations(range(96, 128))))
    lines = []
    for name, rate, channels, static in formats:
        pt = static if static is not None else next(dynamic)
        spelled = draw(st.sampled_from(CASES))(name)
        rtpmap = f"{pt} {spelled}/{rate}" + (f"/{channels}" if channels > 1 else "")
        with_rtpmap = static is None or draw(st.booleans())
        lines.append((pt, f"a=rtpmap:{rtpmap}" if with_rtpmap else None))
    return _sdp(lines)


def _sdp(formats: list[tuple[int, str | None]]) -> bytes:
    m_line = "m=audio 9 RTP/AVP " + " ".join(str(pt) for pt, _ in formats)
    attributes = [line for _, line in formats if line is not None]
    head = ["v=0", "o=- 1 1 IN IP4 127.0.0.1", "s=-", "c=IN IP4 127.0.0.1", "t=0 0"]
    return ("\r\n".join([*head, m_line, *attributes, "a=sendrecv"]) + "\r\n").encode()


def _identities(body: bytes) -> dict[int, Identity]:
    audio = sdp.SessionDescription.parse(body).audio
    assert audio is not None
    rtpmaps = audio.rtpmaps()
    found: dict[int, Identity] = {}
    for pt in audio.payload_types():
        rtpmap = rtpmaps.get(pt)
        static = STATIC_FORMATS.get(pt)
        if rtpmap is not None:
            found[pt] = (rtpmap.name.lower(), rtpmap.clock_rate, rtpmap.channels)
        elif static is not None:
            found[pt] = (static.name.lower(), static.clock_rate, static.channels)
        else:
            found[pt] = pt
    return found


def _is_audio_codec(identity: Identity) -> bool:
    return isinstance(identity, tuple) and identity[0] not in NOT_AUDIO_CODECS


def _answer(data: st.DataObject, callee_offer: bytes) -> bytes:
    """A callee's answer to `callee_offer`: one or more of its audio codecs ipbx can
    transcode (ipbx offers them all), and some of its other formats, in any order, with
    the offer's payload types and names in any case."""
    offered = _identities(callee_offer)
    ours = {(c.name.lower(), c.clock_rate, c.channels) for c in CODECS}
    codecs = [pt for pt, identity in offered.items() if identity in ours]
    others = [pt for pt, identity in offered.items() if not _is_audio_codec(identity)]
    assert codecs
    chosen = data.draw(st.lists(st.sampled_from(codecs), min_size=1, unique=True))
    chosen += data.draw(st.lists(st.sampled_from(others), unique=True)) if others else []
    lines: list[tuple[int, str | None]] = []
    for pt in data.draw(st.permutations(chosen)):
        identity = offered[pt]
        assert isinstance(identity, tuple)
        name, rate, channels = identity
        rtpmap = f"{pt} {data.draw(st.sampled_from(CASES))(name)}/{rate}"
        lines.append((pt, f"a=rtpmap:{rtpmap}" + (f"/{channels}" if channels > 1 else "")))
    return _sdp(lines)


def _leg(call: Call, media: MediaEndpoint, offer: sdp.SessionDescription | None) -> Leg:
    return Leg(call, PHONE, media, invite(), offer=offer)


def _check_sent_to_caller(body: bytes, offer: bytes, caller: Leg, callee: Leg) -> None:
    sent, offered = _identities(body), set(_identities(offer).values())
    assert set(sent.values()) <= offered
    first = next(identity for identity in sent.values() if _is_audio_codec(identity))
    codec, theirs = caller.media.codec, callee.media.codec
    assert codec is not None and theirs is not None
    assert codec.name.lower() not in NOT_AUDIO_CODECS
    assert theirs.name.lower() not in NOT_AUDIO_CODECS
    assert first == (codec.name.lower(), codec.clock_rate, codec.channels)
    # A transcoder only between legs whose codecs differ.
    same = (codec.name.lower(), codec.clock_rate) == (theirs.name.lower(), theirs.clock_rate)
    assert caller.media._bridged_by is (relay if same else transcode)
    event("relayed" if same else "transcoded")


@settings(max_examples=150, deadline=None)
@given(offer=offers(), early=st.booleans(), data=st.data())
def test_ipbx_sends_the_caller_only_formats_it_offered(
    offer: bytes, early: bool, data: st.DataObject
) -> None:
    first = random.randrange(30000, 39800, 2)
    pool: PortPool[ChannelPair] = PortPool("127.0.0.1", first, first + 199)

    async def scenario() -> None:
        a_media, b_media = await MediaEndpoint.open(pool), await MediaEndpoint.open(pool)
        try:
            _call(offer, early, data, a_media, b_media)
        finally:
            a_media.close()
            b_media.close()
            close_pool(pool)
            await asyncio.sleep(0)  # the sockets close on the loop's next turn

    asyncio.run(scenario())


def _call(
    offer: bytes,
    early: bool,
    data: st.DataObject,
    a_media: MediaEndpoint,
    b_media: MediaEndpoint,
) -> None:
    description = sdp.SessionDescription.parse(offer)
    call = Call("c1")
    caller, callee = _leg(call, a_media, description), _leg(call, b_media, None)
    try:
        to_callee = callee_offer(caller, description, b_media, PBX, CODECS)
    except SipError as exc:
        # An offer of nothing but DTMF, CN, RED or FEC has no codec to answer.
        assert exc.status == 488
        assert not any(_is_audio_codec(i) for i in _identities(offer).values())
        event("refused: no codec offered")
        return
    answered = sdp.SessionDescription.parse(_answer(data, to_callee))
    try:
        if early:
            body = join(caller, callee, answered, PBX, CODECS)  # a 183's early media
            _check_sent_to_caller(body, offer, caller, callee)
        body = join(caller, callee, answered, PBX, CODECS)
    except SipError as exc:
        # The callee chose a codec the caller lacks, and the caller offered nothing
        # ipbx can transcode to: 488, never an answer with a codec it did not offer.
        assert exc.status == 488
        ours = {(c.name.lower(), c.clock_rate, c.channels) for c in CODECS}
        assert not ours & set(_identities(offer).values())
        event("refused: nothing to transcode to")
        return
    _check_sent_to_caller(body, offer, caller, callee)
