"""Recordings through the API: GET /calls/{id}/recording sends the WAV of a recorded
call; a call that was not recorded, an unknown call and a record pointing outside the
recordings folder are 404s that say which."""

from __future__ import annotations

from ipbx.store import CallRecord
from tests.support.apiclient import Api
from tests.support.mailbox import write_message_wav


def _record(call_id: str, recording: str | None) -> CallRecord:
    return CallRecord(call_id, "1000", "1001", 100.0, 130.0, "answered", 102.0,
                      recording=recording)  # fmt: skip


def test_a_recorded_calls_wav_is_downloaded(api: Api) -> None:
    folder = api.pbx.config.data_dir / "recordings" / "2026-11-27"
    folder.mkdir(parents=True)
    wav = write_message_wav(folder / "rec1.wav", seconds=1.0)
    api.store.save_call_records(
        [
            _record("rec1", "2026-11-27/rec1.wav"),
            _record("plain", None),
            _record("escape", "../../ipbx.db"),
        ]
    )
    got = api.client.get("/calls/rec1/recording", headers=api.headers(api.reader))
    assert got.status_code == 200
    assert got.headers["content-type"] == "audio/wav"
    assert got.content == wav.read_bytes()
    for call_id, says in (("plain", "not recorded"), ("escape", "gone"), ("nope", "no call")):
        missing = api.client.get(f"/calls/{call_id}/recording", headers=api.headers(api.reader))
        assert missing.status_code == 404 and says in missing.json()["detail"], missing.text
    assert api.client.get("/calls/rec1/recording").status_code == 401
