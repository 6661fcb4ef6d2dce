"""What a caller hears while waiting in a queue: music, position and estimated wait, the
periodic announcement, and the key that asks for a callback.

The music is the folder's shared music on hold (media/moh.py): a waiting caller costs
no decoding or encoding of its own. Every `announce_position_seconds` the caller hears
"You are caller number 3. Your estimated wait is about 2 minutes." (the estimate left
out while the queue has no history), and every `periodic_announcement_seconds` the
periodic announcement (text spoken by text-to-speech, or file:PATH); each interrupts the
music for that caller alone, and the music goes on where it is when it ends. Spoken
prompts are cached by text and announcements encoded once per codec (media/announcer.py),
so an announcement to many callers is made once.

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
import logging
from collections.abc import Awaitable, Iterator
from dataclasses import dataclass, field

from ipbx.media.announcer import Announcer
from ipbx.media.endpoint import MediaError
from ipbx.media.kernel import KernelRelay
from ipbx.media.moh import MusicOnHold
from ipbx.media.tts import TtsError
from ipbx.pbx.queue.callback import ask_callback_number
from ipbx.pbx.queue.model import CALLBACK, CALLBACK_NUMBER, Place
from ipbx.pbx.session import Session

log = logging.getLogger("ipbx.apps")

# How long one wait for a key lasts when no announcement is due: the loop just goes round.
_IDLE_SECONDS = 3600.0


_ONES = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen",
    "eighteen", "nineteen",
)  # fmt: skip
_TENS = ["twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]


def spoken_number(number: int) -> list[str]:
    """A number as the words it is said in, one piece each ("one", "hundred", "twenty",
    "three"): some thirty pieces say every number below a thousand, each synthesised and
    encoded once, as a PBX says numbers from recorded digit sounds. A larger one is
    said whole."""
    if not 0 <= number < 1000:
        return [str(number)]
    hundreds, rest = divmod(number, 100)
    words = [_ONES[hundreds], "hundred"] if hundreds else []
    if rest >= 20:
        tens, ones = divmod(rest, 10)
        words += [_TENS[tens - 2], *([_ONES[ones]] if ones else [])]
    elif rest or not words:
        words.append(_ONES[rest])
    return words


def position_announcement(position: int, estimated_wait: float | None) -> list[str]:
    """What the position announcement says, in the pieces it is spoken in: the position
    and the wait in minutes, in words. The pieces are few, so each is synthesised and
    encoded once however many callers, positions and waits there are."""
    pieces = ["You are caller number", *spoken_number(position)]
    if estimated_wait is None:
        return pieces
    minutes = round(estimated_wait / 60)
    if minutes < 1:
        return [*pieces, "Your estimated wait is less than a minute."]
    unit = "minutes" if minutes > 1 else "minute"
    return [*pieces, "Your estimated wait is about", *spoken_number(minutes), unit]


@dataclass(frozen=True)
class WaitingRoom:
    """One queue's waiting experience (its settings); `wait` runs it for one caller.
    0 seconds turns an announcement off; None for `music` is silence. Made once per queue
    (not per caller), with the PBX's one MusicOnHold and, best, one Announcer for all
    queues: what they share is made once."""

    music: MusicOnHold | None
    announce_position_seconds: float = 0.0
    periodic_announcement: str | None = None  # text to speak, or file:PATH
    periodic_announcement_seconds: float = 60.0
    callback_key: str | None = None
    # Where announcements are encoded once per codec for all the callers who hear them.
    announcer: Announcer = field(default_factory=Announcer)
    # media.relay: kernel: what drops a waiting caller's voice before ipbx reads it.
    kernel: KernelRelay | None = None

    async def wait(self, session: Session, place: Place) -> str:
        """Music and announcements until cancelled; CALLBACK when the caller asked for a
        callback and confirmed the number (in `session.variables[CALLBACK_NUMBER]`)."""
        await session.answer()
        with self._keys_heard(session):
            return await self._wait(session, place)

    async def _wait(self, session: Session, place: Place) -> str:
        loop = asyncio.get_running_loop()
        intervals = self._intervals()
        due = {name: loop.time() + seconds for name, seconds in intervals.items()}
        while True:
            wait = min(due.values(), default=loop.time() + _IDLE_SECONDS) - loop.time()
            with self._music(session):
                pressed = await self._callback_pressed(session, asyncio.sleep(max(wait, 0.0)))
            for name in [name for name, when in due.items() if when <= loop.time()]:
                if pressed:
                    break
                pressed = await self._callback_pressed(
                    session, self._announce(session, name, place)
                )
                due[name] = loop.time() + intervals[name]
            if pressed:
                number = await ask_callback_number(session)
                if number is not None:
                    session.variables[CALLBACK_NUMBER] = number
                    return CALLBACK

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
            pieces = position_announcement(place.position(), place.estimated_wait())
        else:
            assert self.periodic_announcement is not None
            pieces = [self.periodic_announcement]
        for text in pieces:
            try:
                await self.announcer.play(session.leg.media, await session.prompt(text))
            except (TtsError, MediaError) as exc:
                log.warning("%s: announcement %r skipped: %s", session.call.id, text, exc)

    async def _callback_pressed(self, session: Session, until: Awaitable[None]) -> bool:
        """Whether the caller pressed the callback key before `until` ended (which stops
        then); other keys are ignored."""
        ending = asyncio.ensure_future(until)
        try:
            while not ending.done():
                if self.callback_key is None:
                    await ending
                    break
                key = asyncio.ensure_future(session.collect(1, _IDLE_SECONDS, terminators=""))
                try:
                    await asyncio.wait({ending, key}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    key.cancel()
                if key.done() and not key.cancelled() and key.result() == self.callback_key:
                    return True
            return False
        finally:
            # Stopped before this returns: no frame of it goes out after.
            ending.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ending

    @contextlib.contextmanager
    def _keys_heard(self, session: Session) -> Iterator[None]:
        """Without a callback key no key means anything while the caller waits: its
        audio is not decoded for DTMF tones meanwhile, what a waiting caller would cost
        most (the detector runs on every packet of a phone that sends no events)."""
        media = session.leg.media
        digits = media.digits
        if self.callback_key is None:
            media.digits = None
        # Nothing of the caller's audio is needed while it waits: with the kernel relay,
        # the kernel drops it (keys sent as RFC 4733 events still come through).
        quiet = None
        if self.kernel is not None and (media.digits is None or not media.digits.hears_tones):
            quiet = self.kernel.quieten(media)
        try:
            yield
        finally:
            if quiet is not None:
                quiet.close()
            if not media.closed:
                media.digits = digits

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
