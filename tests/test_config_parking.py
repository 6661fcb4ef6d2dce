"""Call parking's configuration (pbx/parking_config.py): the issue's shape loads with
700 as the park number and 701-720 as slots; a bad range, or a slot or park number
that is already another number of the file, is refused with the file, line and field."""

from pathlib import Path

import pytest

from ipbx.config import load_config
from tests.support.config_files import error_of, write

EXTENSIONS = """\
extensions:
  - {number: "1000", password: secret1000}
  - {number: "705", password: secret0705}
numbers:
  - {number: "800", destination: "extension:1000"}
"""


def test_the_issue_shape_loads_and_700_parks(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, 'parking: {slots: "701-720", timeout_seconds: 60}\n'))
    assert config.parking is not None
    assert config.parking.park_number == "700"
    assert config.parking.slot_numbers == tuple(str(n) for n in range(701, 721))
    assert load_config(write(tmp_path, "echo_test: '9196'\n")).parking is None


def test_a_park_number_of_its_own_and_slots_keep_their_width(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "parking: {slots: '0701-0703', number: '799'}\n"))
    assert config.parking is not None
    assert config.parking.slot_numbers == ("0701", "0702", "0703")
    assert config.parking.park_number == "799"


@pytest.mark.parametrize(
    ("parking", "expected"),
    [
        ("{slots: 'seven'}", "ipbx.yaml:6: parking.slots: 'seven': expected a range"),
        ("{slots: '720-701'}", "parking.slots: '720-701': the first slot is after"),
        ("{slots: '1-5000'}", "parking.slots: '1-5000': more than 1000 slots"),
        ("{slots: '701-720', number: '710'}", "parking.number: 710 is one of the slots 701-720"),
        ("{slots: '701-720', timeout_seconds: 0}", "parking.timeout_seconds"),
        ("{slots: '701-710'}", "ipbx.yaml:6: parking.slots: slot 705 is extension 705"),
        ("{slots: '706-710'}", "parking.slots: the park number 705 is extension 705"),
        ("{slots: '801-810'}", "parking.slots: the park number 800 is the number 800 (numbers:)"),
        ("{slots: '9190-9199'}", "parking.slots: slot 9196 is the echo test 9196"),
        ("{slots: '711-720', number: '1000'}", "parking.number: the park number 1000 is exten"),
    ],
)
def test_parking_mistakes_name_the_line_and_field(
    tmp_path: Path, parking: str, expected: str
) -> None:
    assert expected in error_of(tmp_path, f"{EXTENSIONS}parking: {parking}\n")
