"""The leg verbs apps use: answer, play, say, collect digits, record, dial, hang up.

An app (IVR, voicemail, announcement, ring group ...) is a coroutine that takes a
Session: the caller's leg, which ipbx answers itself. These are the verbs Asterisk's
dialplan applications, FreeSWITCH's ESL and Twilio's TwiML give a call flow. When the
caller hangs up, the app's task is cancelled wherever it is waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ipbx.media.endpoint import MediaError
from ipbx.media.moh import MusicOnHold
from ipbx.media.tts import TtsError, prompt_path, synthesize
from ipbx.pbx.call.engine import Calls
from ipbx.pbx.call.fork import AnswerHook
from ipbx.pbx.call.local import CallEnded
from ipbx.pbx.call.model import Call, Leg
from ipbx.pbx.dialplan import OutboundCall

log = logging.getLogger("ipbx.apps")

# RFC 3261 §21: what a caller gets from a call flow that ends before answering.
DECLINED = 603
# Words a minute of spoken prompts.
_SPEED = 160
# The beep that tells a caller to start speaking, as voicemail systems play it.
_BEEP_HZ = 1000
_BEEP_SECONDS = 0.25


@dataclass(frozen=True)
class Prompts:
    """Where spoken prompts are cached and how they are spoken (espeak-ng)."""

    cache_dir: Path
    voice: str = "en"
    country: str = "us"


@dataclass
class Session:
    calls: Calls
    call: Call
    leg: Leg
    prompts: Prompts
    # Values later steps (and webhooks) can read: caller, digits collected, menu choices.
    variables: dict[str, str] = field(default_factory=dict)
    answered: bool = False
    _digits: asyncio.Queue[str] = field(default_factory=asyncio.Queue)
    # What the caller hears while `dial` rings phones for it, until one answers (a
    # parked call ringing its parker again, pbx/parking.py); None: silence.
    ringing_music: MusicOnHold | None = None

    def __post_init__(self) -> None:
        self.leg.media.on_dtmf = self._on_digit
        self.variables.setdefault("caller", self.call.from_number)
        self.variables.setdefault("called", self.call.to_number)

    @property
    def caller(self) -> str:
        return self.call.from_number

    def _on_digit(self, digit: str) -> None:
        self.call.digits.append(digit)
        self._digits.put_nowait(digit)

    async def answer(self, wideband: bool = False) -> None:
        """Answer the call (once; `wideband`: see CallFlows.answer); CallEnded, which
        ends the flow, when the phone's offer is unusable (it got 488, the call is over)."""
        if not self.answered:
            if not self.calls.flows.answer(self.leg, wideband=wideband):
                raise CallEnded(f"{self.call.id}: the caller's offer could not be answered")
            self.answered = True

    async def play(self, source: str | Path, interruptible: bool = False) -> str:
        """Play a file (any format); with `interruptible`, a key press stops it and is
        returned (and left for the next collect). A file that cannot be played is
        logged and skipped, as a prompt that cannot be spoken is."""
        await self.answer()
        return await self._interruptible(self._play(source), interruptible)

    async def _play(self, source: str | Path) -> None:
        try:
            await self.leg.media.play(source)
        except MediaError as exc:
            log.warning("%s: prompt %s skipped: %s", self.call.id, source, exc)

    async def say(self, text: str, interruptible: bool = False) -> str:
        """Speak `text` (or play `file:PATH`). Speech that cannot be made (espeak-ng
        missing or failing) is logged and skipped: the call is answered all the same
        and the flow goes on, so a menu still takes the caller's digits."""
        try:
            prompt = await self.prompt(text)
        except TtsError as exc:
            log.warning("%s: prompt %r skipped: %s", self.call.id, text, exc)
            await self.answer()
            return ""
        return await self.play(prompt, interruptible)

    async def prompt(self, text: str) -> Path:
        if text.startswith("file:"):
            return Path(text[5:])
        rate = self.leg.media.pcm_rate if self.leg.media.codec is not None else 8000
        prompts = self.prompts
        # A prompt said before is a file lookup: no thread (queues say the same ones to
        # every waiting caller).
        cached = prompt_path(text, prompts.cache_dir, prompts.voice, _SPEED, rate)
        if cached.exists():
            return cached
        return await asyncio.to_thread(
            synthesize, text, prompts.cache_dir, prompts.voice, _SPEED, rate
        )

    async def beep(self) -> None:
        await self.answer()
        rate = self.leg.media.pcm_rate
        t = np.arange(int(rate * _BEEP_SECONDS)) / rate
        await self.leg.media.play((8000 * np.sin(2 * np.pi * _BEEP_HZ * t)).astype(np.int16))

    async def collect(
        self,
        max_digits: int,
        timeout: float,
        terminators: str = "#",
        prompt: str | None = None,
        inter_digit: float = 3.0,
    ) -> str:
        """Digits until `max_digits`, a terminator, or silence: `timeout` for the first
        (after the prompt, which a key press interrupts), `inter_digit` for the rest."""
        if prompt is not None:
            await self.say(prompt, interruptible=True)
        else:
            await self.answer()
        digits = ""
        wait = timeout
        while len(digits) < max_digits:
            digit = await self._next_digit(wait)
            if digit is None or digit in terminators:
                break
            digits += digit
            wait = inter_digit
        return digits

    async def _next_digit(self, seconds: float) -> str | None:
        """The next key pressed within `seconds`, else None. Not asyncio.wait_for: on
        3.11 it returns a key that came in the same turn as the cancellation of the
        call flow (the caller hung up), and the flow would go on after its call."""
        try:
            async with asyncio.timeout(seconds):
                return await self._digits.get()
        except TimeoutError:
            return None

    def flush_digits(self) -> None:
        while not self._digits.empty():
            self._digits.get_nowait()

    async def record(self, path: Path, max_seconds: float, stop_digits: str = "#") -> float:
        """Record what the caller says into `path` until a stop key or `max_seconds`;
        the seconds recorded."""
        await self.answer()
        self.flush_digits()
        loop = asyncio.get_running_loop()
        started = loop.time()
        self.leg.media.record(path)
        try:
            deadline = started + max_seconds
            while (left := deadline - loop.time()) > 0:
                digit = await self._next_digit(left)
                if digit is None or digit in stop_digits:
                    break
        finally:
            self.leg.media.stop_recording()
        return loop.time() - started

    async def dial(
        self,
        extensions: Sequence[str],
        timeout: float,
        outside: Sequence[tuple[OutboundCall, str]] = (),
        on_answer: AnswerHook | None = None,
    ) -> int:
        """Ring these extensions (and call these outside numbers: route, caller ID) at
        once; on answer the caller is bridged to whoever answered and the call goes on
        without the app. The final status: 200 when answered, else why not (486 busy,
        480 no answer or not registered ...). `on_answer` is given the leg that
        answered as soon as it is bridged, before the app resumes (the caller may hang
        up in between)."""
        await self.answer()
        leave = self._listen(self.ringing_music)

        def answered(leg: Leg) -> None:
            leave()  # in the turn the answer is read: no music once the two are connected
            if on_answer is not None:
                on_answer(leg)

        try:
            if outside:
                status = await self.calls.trunks.ring_all(
                    self.call, list(extensions), list(outside), timeout, answered
                )
            else:
                status = await self.calls.dialing.dial(
                    self.call, list(extensions), timeout, on_answer=answered
                )
        finally:
            leave()
        if status != 200:
            self.call.status = status  # what the record says if the call ends here
        return status

    def _listen(self, music: MusicOnHold | None) -> Callable[[], None]:
        """The caller hears `music` until the returned function is called."""
        if music is None or not music.files():
            return lambda: None
        try:
            return music.listen(self.leg.media)
        except MediaError:
            return lambda: None

    async def dial_out(self, route: OutboundCall, caller_id: str, timeout: float) -> int:
        """Call an outside number through `route`'s trunks, showing `caller_id`; on
        answer the caller is bridged to it, as with `dial`. The final status."""
        await self.answer()
        return await self.calls.trunks.dial(self.call, route, caller_id, timeout)

    async def hangup(self, status: int = DECLINED) -> None:
        """End the call: BYE when answered, `status` to the INVITE otherwise. Once
        answered, `status` is what the record says unless a dial's came first (a menu
        sends the caller to an extension on do-not-disturb: busy)."""
        if self.call.status is None:
            self.call.status = status
        self.calls.flows.hangup(self.call, status)

    async def _interruptible(self, playing: Awaitable[None], interruptible: bool) -> str:
        if not interruptible:
            await playing
            return ""
        if not self._digits.empty():
            # A key already pressed skips the prompt (the collect that follows reads it).
            task = asyncio.ensure_future(playing)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            return ""
        play_task: asyncio.Future[None] = asyncio.ensure_future(playing)
        digit_task: asyncio.Future[str] = asyncio.ensure_future(self._peek_digit())
        try:
            waiting: set[asyncio.Future[object]] = {play_task, digit_task}  # type: ignore[arg-type]
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        finally:
            play_task.cancel()
            digit_task.cancel()
        if digit_task.done() and not digit_task.cancelled():
            return digit_task.result()
        return ""

    async def _peek_digit(self) -> str:
        digit = await self._digits.get()
        # Put it back in front: the collect that follows reads it first.
        rest = [digit]
        while not self._digits.empty():
            rest.append(self._digits.get_nowait())
        for item in rest:
            self._digits.put_nowait(item)
        return digit


App = Callable[[Session], Awaitable[None]]
