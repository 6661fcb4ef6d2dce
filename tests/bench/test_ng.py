"""tests/support/rtpengine.py, the ng client the media benchmark drives rtpengine with:
bencode as BEP 3 defines it, and rtpengine's ng framing (cookie, space, dictionary) as
its README shows it."""

from __future__ import annotations

import pytest

from tests.support.rtpengine import BencodeError, bdecode, bencode, ng_request, ng_response


def test_bencode_examples_from_bep3() -> None:
    assert bencode(3) == b"i3e"
    assert bencode(-3) == b"i-3e"
    assert bencode("spam") == b"4:spam"
    assert bencode(["spam", "eggs"]) == b"l4:spam4:eggse"
    assert bencode({"cow": "moo", "spam": "eggs"}) == b"d3:cow3:moo4:spam4:eggse"


def test_dictionary_keys_are_sorted_as_bytes() -> None:
    assert bencode({"b": 1, "a": 2, "B": 3}) == b"d1:Bi3e1:ai2e1:bi1ee"


def test_round_trip_of_an_offer() -> None:
    offer = {
        "command": "offer",
        "call-id": "c1",
        "sdp": "v=0\r\nm=audio 4000 RTP/AVP 0\r\n",
        "replace": ["origin", "session-connection"],
    }
    assert bdecode(bencode(offer)) == {
        b"command": b"offer",
        b"call-id": b"c1",
        b"sdp": b"v=0\r\nm=audio 4000 RTP/AVP 0\r\n",
        b"replace": [b"origin", b"session-connection"],
    }


def test_strings_may_hold_any_bytes_including_colons_and_e() -> None:
    assert bdecode(b"5:a:e:b") == b"a:e:b"
    assert bdecode(b"0:") == b""


@pytest.mark.parametrize(
    "data", [b"", b"i12", b"ixe", b"5:abc", b"l", b"d1:a", b"di1ei2ee", b"x", b"i1ei2e"]
)
def test_malformed_input_is_refused(data: bytes) -> None:
    with pytest.raises(BencodeError):
        bdecode(data)


def test_booleans_are_not_integers_in_bencode() -> None:
    with pytest.raises(TypeError):
        bencode(True)


def test_ng_framing() -> None:
    request = ng_request(b"5323_1", {"command": "ping"})
    assert request == b"5323_1 d7:command4:pinge"
    cookie, answer = ng_response(b"5323_1 d6:result4:ponge")
    assert (cookie, answer) == (b"5323_1", {b"result": b"pong"})
    with pytest.raises(BencodeError):
        ng_response(b"nocookie")
    with pytest.raises(BencodeError):
        ng_response(b"c1 l4:pinge")
