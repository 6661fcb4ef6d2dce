"""Voicemail boxes as tests fill and watch them: a message file, a message delivered, a
box filed before the server starts, and a phone's message-waiting subscription (RFC 3842)."""

from __future__ import annotations

import asyncio
import wave
from pathlib import Path

import numpy as np

from ipbx.pbx.voicemail import Mailbox, Message
from ipbx.sip.message import Response
from tests.support.ports import LOOPBACK
from tests.support.sipclient import SipClient

OWNER = "1001"
SUMMARY = "application/simple-message-summary"


def write_message_wav(path: Path, seconds: float = 2.0, hz: float = 700.0) -> Path:
    t = np.arange(int(8000 * seconds)) / 8000
    samples = (8000 * np.sin(2 * np.pi * hz * t)).astype("<i2")
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(8000)
        wav.writeframes(samples.tobytes())
    return path


def leave_message(box: Mailbox, caller: str, frames: int) -> Message:
    """A message delivered to a box as the voicemail app delivers one (`frames` samples
    at 8 kHz)."""
    recording = box.new_message_path()
    with wave.open(str(recording), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(8000)
        wav.writeframes(b"\x01\x00" * frames)
    return asyncio.run(box.deliver(recording, caller, frames / 8000))


def seed_mailbox(data_dir: Path, new: int, saved: int) -> None:
    """Messages left before the server starts, as an earlier run would have filed them."""
    for folder, count in (("new", new), ("saved", saved)):
        directory = data_dir / "voicemail" / OWNER / folder
        directory.mkdir(parents=True, exist_ok=True)
        for index in range(count):
            write_message_wav(directory / f"2026010{index + 1}T100000000000Z-abc{index}.wav", 0.5)


def subscribe(
    client: SipClient,
    user: str = OWNER,
    mailbox: str = OWNER,
    expires: int = 600,
    event: str = "message-summary",
    password: str | None = None,
) -> Response | None:
    return client.request(
        "SUBSCRIBE",
        f"sip:{mailbox}@{LOOPBACK}:{client.port}",
        user=user,
        to=f"sip:{mailbox}@{LOOPBACK}",
        password=f"secret{user}" if password is None else password,
        headers=[
            f"Contact: <sip:{user}@{LOOPBACK}:{client.local_port}>",
            f"Event: {event}",
            f"Expires: {expires}",
            f"Accept: {SUMMARY}",
        ],
    )
