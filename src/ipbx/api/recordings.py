"""Where a call's recording is on disk, for the API and the web pages that play it."""

from pathlib import Path

from fastapi import HTTPException

from ipbx.store import CallRecord


def recording_file(data_dir: Path, record: CallRecord | None, call_id: str) -> Path:
    """The recording of a call: 404 when there is no such call, it was not recorded,
    or its file is gone (or would be outside the recordings folder)."""
    if record is None:
        raise HTTPException(404, f"call_id: no call {call_id}")
    if record.recording is None:
        raise HTTPException(404, f"call_id: call {call_id} was not recorded")
    recordings = (data_dir / "recordings").resolve()
    path = (recordings / record.recording).resolve()
    if not path.is_relative_to(recordings) or not path.is_file():
        raise HTTPException(404, f"call_id: the recording of call {call_id} is gone")
    return path
