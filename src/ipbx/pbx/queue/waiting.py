"""What a caller hears while waiting in a queue: music, position and estimated wait, the
periodic announcement, and the key that asks for a callback.

The music is the folder's shared music on hold (media/moh.py): a waiting caller costs
no decoding or encoding of its own. Every `announce_position_seconds` the caller hears
"You are caller number 3. Your estimated wait is about 2 minutes." (the estimate left
out while the queue has no history), and every `periodic_announcement_seconds` the
periodic announcement (text spoken by text-to-speech, or file:PATH); each interrupts the
music for that caller alone, and the music goes on where it is when it ends. Spoken
prompts are cached by text, so the same announcement to many callers is made once.

With a `callback_key`, the caller may press it (also during an announcement): the
callback prompt (callback.py) asks for the number, and `wait` returns CALLBACK with the
number in the session's variables (CALLBACK_NUMBER); a caller who declines goes back to
waiting. Otherwise `wait` runs until its task is cancelled (an agent answered, the
caller hung up, the queue timed out): the music and any announcement stop at once, and
the endpoint is left to whoever takes the call.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

from ipbx.media.endpoint import MediaError
from ipbx.media.moh import MusicOnHold
from ipbx.pbx.queue.callback import ask_callback_number
from ipbx.pbx.queue.model import Place
from ipbx.pbx.session import Session

CALLBACK = "callback"
# The session variable that holds the number a caller asked to be called back at.
CALLBACK_NUMBER = "callback_number"
# How long one wait for a key lasts when no announcement is due: the loop just goes round.
_IDLE_SECONDS = 3600.0


def position_announcement(position: int, estimated_wait: float | None) -> str:
    """What the position announcement says: the position, and the wait in minutes."""
    text = f"You are caller number {position}."
    if estimated_wait is None:
        return text
    minutes = round(estimated_wait / 60)
    if minutes < 1:
        return f"{text} Your estimated wait is less than a minute."
    return f"{text} Your estimated wait is about {minutes} minute{'s' if minutes > 1 else ''}."


@dataclass(frozen=True)
class WaitingRoom:
    """One queue's waiting experience (its settings); `wait` runs it for one caller.
    0 seconds turns an announcement off; None for `music` is silence."""

    music: MusicOnHold | None
    announce_position_seconds: float = 0.0
    periodic_announcement: str | None = None  # text to speak, or file:PATH
    periodic_announcement_seconds: float = 60.0
    callback_key: str | None = None

    async def wait(self, session: Session, place: Place) -> str:
        """Music and announcements until cancelled; CALLBACK when the caller asked for a
        callback and confirmed the number (in `session.variables[CALLBACK_NUMBER]`)."""
        await session.answer()
        loop = asyncio.get_running_loop()
        intervals = self._intervals()
        due = {name: loop.time() + seconds for name, seconds in intervals.items()}
        while True:
            wait = min(due.values(), default=loop.time() + _IDLE_SECONDS) - loop.time()
            with self._music(session):
                key = await session.collect(1, max(wait, 0.0), terminators="")
            if key and key == self.callback_key:
                number = await ask_callback_number(session)
                if number is not None:
                    session.variables[CALLBACK_NUMBER] = number
                    return CALLBACK
                continue
            for name in [name for name, when in due.items() if when <= loop.time()]:
                await self._announce(session, name, place)
                due[name] = loop.time() + intervals[name]

    def _intervals(self) -> dict[str, float]:
        """The announcements this queue makes, in the order they play when both are due."""
        intervals: dict[str, float] = {}
        if self.announce_position_seconds > 0:
            intervals["position"] = self.announce_position_seconds
        if self.periodic_announcement and self.periodic_announcement_seconds > 0:
            intervals["periodic"] = self.periodic_announcement_seconds
        return intervals

    async def _announce(self, session: Session, name: str, place: Place) -> None:
        if name == "position":
            text = position_announcement(place.position(), place.estimated_wait())
        else:
            assert self.periodic_announcement is not None
            text = self.periodic_announcement
        # A key pressed during the announcement ends it and is read by the next wait.
        await session.say(text, interruptible=self.callback_key is not None)

    @contextlib.contextmanager
    def _music(self, session: Session) -> Iterator[None]:
        """The shared music on the caller's leg while the block runs (silence when there
        is no music or the leg cannot take it)."""
        leave = None
        if self.music is not None:
            try:
                leave = self.music.listen(session.leg.media)
            except MediaError:
                leave = None
        try:
            yield
        finally:
            if leave is not None:
                leave()
