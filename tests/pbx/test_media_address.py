"""The SDP address (media.address, media.public_address): by default RTP binds on every
interface and the SDP each phone gets carries the address that phone reaches SIP on; a
configured address, and above it a public address, is written as it stands."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ipbx import sdp
from tests.support.testbed import Testbed, play


def _connection_address(body: bytes) -> str:
    description = sdp.SessionDescription.parse(body)
    audio = description.audio
    assert audio is not None
    connection = description.connection_for(audio)
    assert connection is not None
    return connection.address


def _sdp_phones_get(tmp_path: Path, media: dict[str, Any]) -> tuple[str, str]:
    """The addresses in the SDP of the callee's INVITE and of the caller's 200."""
    seen: list[str] = []

    async def story(lab: Testbed) -> None:
        alice, bob = await lab.registered("1000"), await lab.registered("1001")
        call = alice.call("1001")
        ringing = await bob.rings()
        seen.append(_connection_address(ringing.invite.body))
        ringing.answer()
        answer = await call.final()
        seen.append(_connection_address(answer.body))
        await call.hang_up()

    def edit(config: dict[str, Any]) -> None:
        config["media"] = media

    play(tmp_path, story, edit)
    return seen[0], seen[1]


def test_by_default_sdp_carries_the_address_phones_reach_sip_on(tmp_path: Path) -> None:
    assert _sdp_phones_get(tmp_path, {}) == ("10.0.0.1", "10.0.0.1")


def test_a_configured_address_is_carried_as_it_stands(tmp_path: Path) -> None:
    assert _sdp_phones_get(tmp_path, {"address": "127.0.0.1"}) == ("127.0.0.1", "127.0.0.1")


def test_the_public_address_overrides_it(tmp_path: Path) -> None:
    media = {"address": "127.0.0.1", "public_address": "198.51.100.4"}
    assert _sdp_phones_get(tmp_path, media) == ("198.51.100.4", "198.51.100.4")
