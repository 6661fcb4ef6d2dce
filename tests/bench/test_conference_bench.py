"""bench/rtpload.py's mode conference, its pure pieces: which room each member dials
and which members talk. No timing is asserted: figures come from bench/run.py on a
quiet machine."""

from __future__ import annotations

import argparse

from bench.rtpload import Media, member_media, room_number

TALKER = Media(0, "PCMU/8000", 160, [b"talk"])
QUIET = Media(0, "PCMU/8000", 160, [b"hush"])


def args(mode: str = "conference", room_size: int = 0, talkers: int = 3) -> argparse.Namespace:
    return argparse.Namespace(mode=mode, number="8000", room_size=room_size, talkers=talkers)


def test_one_room_has_three_talkers_and_every_member_dials_it() -> None:
    one_room = args()
    assert {room_number(one_room, i) for i in range(500)} == {"8000"}
    talking = [i for i in range(500) if member_media(one_room, i, TALKER, QUIET) is TALKER]
    assert talking == [0, 1, 2]


def test_rooms_of_four_have_one_talker_each() -> None:
    small = args(room_size=4, talkers=1)
    assert [room_number(small, i) for i in range(9)] == ["8000"] * 4 + ["8001"] * 4 + ["8002"]
    talking = [i for i in range(12) if member_media(small, i, TALKER, QUIET) is TALKER]
    assert talking == [0, 4, 8]


def test_other_modes_dial_the_callee() -> None:
    assert room_number(args(mode="relay"), 7) == ""
