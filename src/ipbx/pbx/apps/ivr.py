"""IVR / auto-attendant: a greeting, then a key press picks an option.

Synopsis (config `ivrs`): `{name, greeting, options: {digit: destination},
timeout_seconds, retries, timeout_destination, invalid_destination, direct_dial}`.

The greeting plays until the caller presses a key. A digit that is an option goes to its
destination; with `direct_dial`, digits that make an extension number ring it. Silence
for `timeout_seconds`, or a wrong key, plays the greeting again, up to `retries` more
times, then goes to `timeout_destination` or `invalid_destination`. The choice is kept
in the session's variables as `ivr.NAME` for later steps and webhooks.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from ipbx.pbx.apps.ivr_config import IvrConfig
from ipbx.pbx.destination import Destination, Kind
from ipbx.pbx.session import Session

# Between the digits of an extension dialled from the menu.
INTER_DIGIT_SECONDS = 2.0
_MAX_EXTENSION_DIGITS = 8


async def run_menu(
    session: Session,
    menu: IvrConfig,
    run: Callable[[Session, Destination], Awaitable[None]],
    is_extension: Callable[[str], bool],
) -> None:
    greeting = str(menu.greeting)
    longest = max((len(key) for key in menu.options), default=1)
    max_digits = _MAX_EXTENSION_DIGITS if menu.direct_dial else longest
    for attempt in range(menu.retries + 1):
        last = attempt == menu.retries
        digits = await session.collect(
            max_digits, menu.timeout_seconds, "#", greeting, INTER_DIGIT_SECONDS
        )
        if not digits:
            if last:
                await run(session, menu.timeout_destination)
                return
            continue
        session.variables[f"ivr.{menu.name}"] = digits
        chosen = menu.options.get(digits)
        if chosen is None and menu.direct_dial and is_extension(digits):
            chosen = Destination(Kind.EXTENSION, digits)
        if chosen is not None:
            await run(session, chosen)
            return
        if last:
            await run(session, menu.invalid_destination)
            return
        await session.say("That is not a valid choice.")
