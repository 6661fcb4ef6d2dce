"""Voicemail through the API: a mailbox's messages are listed with caller, time,
length and new/old, downloaded as the WAV that was recorded, and deleted by an admin;
unknown extensions and messages get a 404 naming the field, no path leaves the mailbox,
and another tenant sees no mailbox at all."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ipbx.config import Config
from ipbx.pbx.extension import Extension, VoicemailConfig
from ipbx.pbx.voicemail import Mailbox
from tests.support.apiclient import Api, serve_api
from tests.support.mailbox import leave_message


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    config = Config(
        data_dir=tmp_path / "data",
        extensions=[
            Extension(
                number="1000", name="Alice", password="secret1000",
                voicemail=VoicemailConfig(pin="1234"),
            ),
            Extension(number="1001", name="Bob", password="secret1001"),
        ],
    )  # fmt: skip
    yield from serve_api(config)


def mailbox(api: Api) -> Mailbox:
    box = api.pbx.mailboxes.get("1000")
    assert box is not None
    return box


def test_messages_are_listed_newest_first_with_their_status(api: Api) -> None:
    box = mailbox(api)
    first = box.mark_saved(leave_message(box, "1001", 8000))
    second = leave_message(box, "+15551234567", 4000)

    listed = api.client.get("/voicemail/1000", headers=api.headers(api.reader))
    assert listed.status_code == 200
    body = listed.json()
    assert body["total"] == 2
    assert [m["id"] for m in body["items"]] == [second.id, first.id]
    newest = body["items"][0]
    assert newest["caller"] == "+15551234567" and newest["status"] == "new"
    assert newest["duration"] == 0.5
    assert newest["received"] == pytest.approx(second.received.timestamp())
    assert body["items"][1]["status"] == "old" and body["items"][1]["duration"] == 1.0

    only_new = api.client.get("/voicemail/1000?status=new", headers=api.headers()).json()
    assert [m["id"] for m in only_new["items"]] == [second.id]
    paged = api.client.get("/voicemail/1000?limit=1&offset=1", headers=api.headers()).json()
    assert paged["total"] == 2 and [m["id"] for m in paged["items"]] == [first.id]


def test_a_message_downloads_as_the_recorded_wav_and_stays_new(api: Api) -> None:
    box = mailbox(api)
    message = leave_message(box, "1001", 1600)
    got = api.client.get(f"/voicemail/1000/{message.id}", headers=api.headers(api.reader))
    assert got.status_code == 200
    assert got.headers["content-type"] == "audio/wav"
    assert got.content == message.path.read_bytes()
    assert box.counts() == (1, 0)


def test_an_admin_deletes_a_message(api: Api) -> None:
    box = mailbox(api)
    kept = leave_message(box, "1001", 800)
    gone = leave_message(box, "1001", 800)
    assert (
        api.client.delete(f"/voicemail/1000/{gone.id}", headers=api.headers(api.reader)).status_code
        == 403
    )
    deleted = api.client.delete(f"/voicemail/1000/{gone.id}", headers=api.headers())
    assert deleted.status_code == 204
    assert not gone.path.exists() and not gone.metadata_path.exists()
    assert [m.id for m in box.messages("new")] == [kept.id]
    again = api.client.delete(f"/voicemail/1000/{gone.id}", headers=api.headers())
    assert again.status_code == 404
    assert again.json() == {"detail": f"message_id: no message {gone.id} in mailbox 1000"}


def test_unknown_extensions_and_messages_name_the_field(api: Api) -> None:
    for number in ("1001", "1999"):  # no mailbox configured; no such extension
        missing = api.client.get(f"/voicemail/{number}", headers=api.headers())
        assert missing.status_code == 404
        assert missing.json() == {"detail": f"extension: no mailbox {number}"}
    unknown = api.client.get("/voicemail/1000/20250101T000000000000Z-abcdef", headers=api.headers())
    assert unknown.status_code == 404 and unknown.json()["detail"].startswith("message_id:")
    assert api.client.get("/voicemail/1000").status_code == 401


def test_no_path_reaches_outside_the_mailbox(api: Api, tmp_path: Path) -> None:
    box = mailbox(api)
    leave_message(box, "1001", 800)
    secret = tmp_path / "data" / "voicemail" / "secret.wav"
    secret.write_bytes(b"RIFF not yours")
    (box.directory / "greetings").mkdir(exist_ok=True)
    (box.directory / "greetings" / "busy.wav").write_bytes(b"RIFF greeting")
    for path in (
        "/voicemail/1000/..%2Fsecret",
        "/voicemail/1000/..%2F..%2Fsecret",
        "/voicemail/1000/%2E%2E",
        "/voicemail/1000/busy",  # a greeting, not a message
        "/voicemail/..%2F1000/busy",
        "/voicemail/1000/new",
    ):
        got = api.client.get(path, headers=api.headers())
        assert got.status_code in (404, 422), path
        assert b"RIFF" not in got.content, path
        deleted = api.client.delete(path, headers=api.headers())
        assert deleted.status_code in (404, 405, 422), path
    assert secret.exists() and (box.directory / "greetings" / "busy.wav").exists()
    assert box.counts() == (1, 0)


def test_another_tenant_sees_no_mailbox(api: Api) -> None:
    message = leave_message(mailbox(api), "1001", 800)
    other = api.headers(api.other_tenant)
    for response in (
        api.client.get("/voicemail/1000", headers=other),
        api.client.get(f"/voicemail/1000/{message.id}", headers=other),
        api.client.delete(f"/voicemail/1000/{message.id}", headers=other),
    ):
        assert response.status_code == 404
        assert response.json() == {"detail": "extension: no mailbox 1000"}
    assert message.path.exists()
