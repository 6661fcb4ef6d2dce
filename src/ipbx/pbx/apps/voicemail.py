"""Voicemail: leaving a message in an extension's mailbox.

Synopsis (destination `voicemail:NUMBER`, also where busy and unanswered calls to an
extension with a mailbox go): the owner's recorded greeting (busy or unavailable) or a
spoken one, a beep, then the caller speaks until they press # or hang up (at most
`MAX_MESSAGE_SECONDS`). A message of at least a second is delivered: kept in the
mailbox, signalled to the owner's phones (message waiting, RFC 3842) and mailed when
the mailbox has an address.
"""

from __future__ import annotations

import asyncio
import logging
import wave
from pathlib import Path

from ipbx.pbx.events import VOICEMAIL_NEW
from ipbx.pbx.session import Session
from ipbx.pbx.voicemail import Mailbox

log = logging.getLogger("ipbx.voicemail")

MAX_MESSAGE_SECONDS = 180.0
MIN_MESSAGE_SECONDS = 1.0


async def leave_message(session: Session, mailbox: Mailbox, number: str) -> None:
    greeting = mailbox.greeting("unavailable")
    if greeting is not None:
        await session.play(greeting, interruptible=True)
    else:
        spoken = " ".join(number)
        await session.say(
            f"The person at extension {spoken} is not available. "
            "Please leave a message after the tone, and press the hash key when done.",
            interruptible=True,
        )
    await session.beep()
    path = mailbox.new_message_path()
    try:
        seconds = await session.record(path, MAX_MESSAGE_SECONDS)
    except asyncio.CancelledError:
        # The caller hung up, which is how most messages end: keep what was said. The
        # delivery runs on its own, as this task is being cancelled.
        _deliver(session, mailbox, path, _wav_seconds(path))
        raise
    _deliver(session, mailbox, path, seconds)
    await session.say("Thank you. Goodbye.")


_deliveries: set[asyncio.Task[object]] = set()


def _deliver(session: Session, mailbox: Mailbox, path: Path, seconds: float) -> None:
    if seconds < MIN_MESSAGE_SECONDS:
        path.unlink(missing_ok=True)
        return
    task: asyncio.Task[object] = asyncio.ensure_future(_file(session, mailbox, path, seconds))
    _deliveries.add(task)
    task.add_done_callback(_delivered)


async def _file(session: Session, mailbox: Mailbox, path: Path, seconds: float) -> None:
    message = await mailbox.deliver(path, session.caller, seconds)
    session.calls.events.publish(
        VOICEMAIL_NEW,
        {
            "extension": mailbox.number,
            "caller": session.caller,
            "message": message.id,
            "duration": round(message.seconds, 3),
        },
    )


def _delivered(task: asyncio.Task[object]) -> None:
    _deliveries.discard(task)
    if not task.cancelled() and task.exception() is not None:
        log.error("voicemail delivery failed", exc_info=task.exception())


def _wav_seconds(path: Path) -> float:
    try:
        with wave.open(str(path)) as wav:
            return float(wav.getnframes() / wav.getframerate())
    except (OSError, wave.Error, EOFError):
        return 0.0
