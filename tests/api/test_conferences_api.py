"""Conference rooms through the API without a call in them: the rooms are listed, and
every mistake gets its status: an unknown room or member 404, and so does an invitation
to a number that is no extension and no outbound route takes; a locked room refuses an
invitation with 409 (and so does
recording an empty room), a reader may look but not act, another tenant sees no room. (A
room with members, muted, talking and kicked, is the interop scenario's:
tests/interop/test_conference.py.)"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ipbx.config import Config
from ipbx.pbx.conference.config import ConferenceConfig
from ipbx.pbx.extension import Extension
from tests.api.test_metrics import samples
from tests.support.apiclient import Api, serve_api


@pytest.fixture
def rooms_api(tmp_path: Path) -> Iterator[Api]:
    config = Config(
        data_dir=tmp_path / "data",
        extensions=[Extension(number="1000", name="Alice", password="secret1000")],
        conferences=[
            ConferenceConfig(name="standup", pin="4321"),
            ConferenceConfig(name="board", moderator_pin="9999", max_members=5),
        ],
    )
    yield from serve_api(config)


def test_rooms_are_listed_and_mistakes_get_their_status(rooms_api: Api) -> None:
    api = rooms_api
    client, admin, reader = api.client, api.headers(), api.headers(api.reader)
    listed = client.get("/conferences", headers=reader).json()
    assert listed["total"] == 2
    assert listed["items"][1] == {
        "name": "standup", "locked": False, "recording": None, "members": [],
    }  # fmt: skip
    assert client.get("/conferences/board", headers=reader).json()["members"] == []

    def post(path: str, token: dict[str, str] = admin, **body: object) -> tuple[int, str]:
        answer = client.post(path, json=body or None, headers=token)
        return answer.status_code, str(answer.json().get("detail", ""))

    assert client.get("/conferences/nosuch", headers=reader).status_code == 404
    assert post("/conferences/nosuch/members/1/mute")[0] == 404
    status, detail = post("/conferences/standup/members/7/kick")
    assert (status, detail.startswith("member:")) == (404, True)
    assert post("/conferences/standup/members/1/shout")[0] == 422
    assert post("/conferences/standup/members/1/mute", reader)[0] == 403
    for number in ("5555", "+15551234567"):  # no extension, and no outbound route
        status, detail = post("/conferences/standup/dial", number=number)
        assert (status, detail) == (404, f"number: no extension or outbound route for {number}")
    assert post("/conferences/standup/dial", number="55#5")[0] == 422

    for action in ("start", "stop"):  # nobody in the room: nothing to record
        assert post("/conferences/standup/recording", action=action)[0] == 409
    api.pbx.conferences.rooms["standup"].locked = True
    status, detail = post("/conferences/standup/dial", number="1000")
    assert (status, detail) == (409, "name: conference standup is locked")
    api.pbx.conferences.rooms["standup"].locked = False
    status, _ = post("/conferences/standup/dial", number="1000")  # rings nobody: not registered
    assert status == 202

    found = samples(client.get("/metrics", headers=reader).text)
    assert found[("ipbx_conference_members", (("conference", "board"),))] == 0
    assert found[("ipbx_conference_talking", (("conference", "standup"),))] == 0

    other = api.headers(api.other_tenant)
    assert client.get("/conferences", headers=other).json()["total"] == 0
    assert client.get("/conferences/standup", headers=other).status_code == 404
