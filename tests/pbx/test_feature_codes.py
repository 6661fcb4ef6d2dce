"""Feature codes dialled from a phone (`ipbx phone`) on a live server: do-not-disturb
(*78/*79), forward everything (*72 NUMBER / *73), the mailbox menu (*97) and call
pickup (*8)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.mailbox import seed_mailbox
from tests.support.phones import Phone, dial, final_status
from tests.support.records import call_records
from tests.support.server import IpbxServer, extension_range, start_configured_ipbx
from tests.support.sipclient import next_request, reply_to
from tests.support.softphone import analyse, ipbx_phone, write_tone

CALLER, OWNER, OTHER = extension_range(3)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[IpbxServer]:
    def edit(config: dict[str, Any]) -> None:
        config["extensions"][1]["voicemail"] = {"pin": "1234"}

    workdir = tmp_path / "ipbx"
    seed_mailbox(workdir / "data", new=2, saved=0)
    ipbx = start_configured_ipbx(workdir, edit)
    yield ipbx
    code = ipbx.stop()
    print(f"--- ipbx (exit {code}) log tail:\n{ipbx.log_tail()}")


def _dial(server: IpbxServer, workdir: Path, code: str, *extra: str) -> None:
    """OWNER dials `code`; `extra` options come last, so a --duration there wins."""
    with ipbx_phone(
        workdir, server.port, OWNER, "--call", code, "--duration", "6", "--timeout", "30", *extra
    ) as phone:
        status, out = phone.finish(timeout=40)
    assert (status, out.splitlines()[-1]) == (0, "result: answered"), phone.log


def test_do_not_disturb_on_and_off(server: IpbxServer, tmp_path: Path) -> None:
    _dial(server, tmp_path, "*78")
    other = Phone(server, OTHER.number, OTHER.password)
    owner = Phone(server, OWNER.number, OWNER.password)
    caller = dial(server, OWNER.number)
    # With a mailbox, a do-not-disturb extension's calls go to voicemail.
    assert final_status(caller) == 200
    caller.close()
    owner.client.sock.settimeout(0.5)
    with pytest.raises(TimeoutError):
        owner.rings()
    _dial(server, tmp_path, "*79")
    owner.client.sock.settimeout(8)
    caller = dial(server, OWNER.number)
    invite = owner.rings()
    owner.answer(invite)
    assert final_status(caller) == 200
    for phone in (owner, other):
        phone.close()
    caller.close()
    settings = json.loads((server.data_dir / "extension-settings.json").read_text())
    assert settings[OWNER.number]["dnd"] is False
    server.stop()  # the two calls still up end, and are recorded
    paths = [r.path for r in call_records(server, count=4)]
    assert "feature:*78" in paths and "feature:*79" in paths
    assert "extension:1001,voicemail:1001" in paths


def test_forward_everything_to_another_extension(server: IpbxServer, tmp_path: Path) -> None:
    _dial(server, tmp_path, "*721002")
    other = Phone(server, OTHER.number, OTHER.password)
    caller = dial(server, OWNER.number)
    invite = other.rings()
    other.answer(invite)
    assert final_status(caller) == 200
    caller.close()
    _dial(server, tmp_path, "*73")
    owner = Phone(server, OWNER.number, OWNER.password)
    caller = dial(server, OWNER.number)
    owner.answer(owner.rings())
    assert final_status(caller) == 200
    for phone in (owner, other):
        phone.close()
    caller.close()


def test_the_mailbox_menu_saves_a_message_and_deletes_another(
    server: IpbxServer, tmp_path: Path
) -> None:
    """PIN, 1 to listen, then 9 on the first new message (saved), 7 on the second
    (deleted)."""
    mailbox = server.data_dir / "voicemail" / OWNER.number
    assert len(list((mailbox / "new").glob("*.wav"))) == 2
    _dial(server, tmp_path, "*97", "--dtmf", "1234#197", "--duration", "15")
    assert list((mailbox / "new").glob("*.wav")) == []
    assert len(list((mailbox / "saved").glob("*.wav"))) == 1


def test_pickup_answers_the_call_ringing_elsewhere(server: IpbxServer, tmp_path: Path) -> None:
    """1000 calls 1002, whose phone rings and rings; 1001 dials *8 and talks to 1000."""
    ringing = Phone(server, OTHER.number, OTHER.password)
    voice = write_tone(tmp_path / "caller.wav", 700, 8)
    music = write_tone(tmp_path / "picker.wav", 1000, 8)
    with ipbx_phone(
        tmp_path, server.port, CALLER,
        "--call", OTHER.number, "--play", str(voice), "--record", str(tmp_path / "c.wav"),
        "--duration", "6", "--timeout", "30",
    ) as caller:  # fmt: skip
        invite = ringing.rings()
        ringing.client.send(reply_to(invite, 180, []))
        _dial(server, tmp_path, "*8", "--play", str(music), "--record", str(tmp_path / "p.wav"))
        status, out = caller.finish(timeout=30)
    assert (status, out.splitlines()[-1]) == (0, "result: answered"), caller.log
    cancel = next_request(ringing.client, "CANCEL")  # the ringing phone stopped
    assert cancel.call_id == invite.call_id
    ringing.close()
    assert analyse(tmp_path / "c.wav").dominant_hz == pytest.approx(1000, abs=20)
    assert analyse(tmp_path / "p.wav").dominant_hz == pytest.approx(700, abs=20)
    server.stop()
    paths = [r.path for r in call_records(server)]
    assert f"extension:{OTHER.number},pickup:{OWNER.number}" in paths
