"""The callback prompt: a waiting caller who asked to be called back confirms the number.

The caller hears "Press 1 to be called back at 5 5 5 0 1 2 3, or enter another number
followed by hash." Pressing 1 (alone) takes the caller's own number; digits ended by #
are another number, read back and confirmed with 1. A caller with no number to call
back (anonymous, or not a number) is asked for one straight away. Anything else (star,
silence, a number that is not one) declines, after a second try for a mistyped number:
the caller goes back to waiting. Calling back is the queue engine's (it keeps the
caller's place and calls when the place reaches the head).
"""

from __future__ import annotations

import re

from ipbx.pbx.session import Session

CONFIRM = "1"
# E.164 numbers have at most 15 digits; 3 lets an internal extension be called back.
_NUMBER = re.compile(r"\+?[0-9]{3,15}")
_FIRST_DIGIT_SECONDS = 8.0
_ATTEMPTS = 2


def callback_number(number: str) -> bool:
    """Whether `number` can be called back: 3 to 15 digits, a leading + allowed."""
    return _NUMBER.fullmatch(number) is not None


def spoken(number: str) -> str:
    """A number as a prompt reads it, digit by digit."""
    return " ".join(number.lstrip("+"))


async def ask_callback_number(session: Session) -> str | None:
    """The number the caller confirms to be called back at, or None if declined."""
    own = session.caller if callback_number(session.caller) else None
    for _ in range(_ATTEMPTS):
        if own is not None:
            prompt = (
                f"Press {CONFIRM} to be called back at {spoken(own)}, "
                "or enter another number followed by hash."
            )
        else:
            prompt = "Enter the number to call you back at, followed by hash."
        session.flush_digits()
        entered = await session.collect(16, _FIRST_DIGIT_SECONDS, "#", prompt)
        if not entered or "*" in entered:
            return None
        if entered == CONFIRM and own is not None:
            await session.say("Thank you. We will call you back.")
            return own
        if callback_number(entered):
            confirmed = await session.collect(
                1,
                _FIRST_DIGIT_SECONDS,
                "",
                f"You entered {spoken(entered)}. Press {CONFIRM} to confirm.",
            )
            if confirmed == CONFIRM:
                await session.say("Thank you. We will call you back.")
                return entered
            return None
        await session.say("That number cannot be used.")
    return None
