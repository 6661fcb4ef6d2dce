"""Conference rooms in the configuration file: the issue's shape loads, a room is a
destination by name, and mistakes (a room nobody defined, one PIN for both roles, a room
that waits for a moderator nobody can be) are refused with the file, line and field."""

from pathlib import Path

import pytest

from ipbx.config import load_config
from ipbx.pbx.destination import Destination, Kind
from tests.support.config_files import error_of, write

ISSUE_SHAPE = """\
conferences:
  - {name: standup, pin: "4321", moderator_pin: "9999", max_members: 0, record: false,
     wait_for_moderator: false, announce_join: true}
numbers:
  - {number: "800", destination: "conference:standup"}
"""


def test_the_issue_shape_loads(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, ISSUE_SHAPE))
    [room] = config.conferences
    assert (room.name, room.pin, room.moderator_pin, room.max_members) == (
        "standup", "4321", "9999", 0,
    )  # fmt: skip
    assert (room.record, room.wait_for_moderator, room.announce_join) == (False, False, True)
    assert config.numbers[0].destination == Destination(Kind.CONFERENCE, "standup")
    assert type(room).model_validate(room.model_dump(mode="json")) == room


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            ISSUE_SHAPE.replace("conference:standup", "conference:nosuch"),
            "yaml:5: numbers[0].destination: conference:nosuch: there is no conference named "
            "nosuch",
        ),
        (
            ISSUE_SHAPE.replace('moderator_pin: "9999"', 'moderator_pin: "4321"'),
            "yaml:2: conferences[0].moderator_pin: the moderator PIN must differ from the PIN",
        ),
        (
            ISSUE_SHAPE.replace('moderator_pin: "9999", ', "").replace(
                "wait_for_moderator: false", "wait_for_moderator: true"
            ),
            "conferences[0].wait_for_moderator: wait_for_moderator needs a moderator_pin",
        ),
        (ISSUE_SHAPE.replace('pin: "4321"', 'pin: "12a"'), "conferences[0].pin"),
        (ISSUE_SHAPE.replace("max_members: 0", "max_members: -1"), "conferences[0].max_members"),
    ],
)
def test_mistakes_name_the_line_and_field(tmp_path: Path, text: str, expected: str) -> None:
    assert expected in error_of(tmp_path, text)
