"""The mailbox menu by phone (feature code *97).

Synopsis: the PIN then #; "You have N new and M saved messages": 1 (or silence) to
listen, 0 to record the unavailable greeting (# ends it). Each message, new ones first,
oldest first: after it (or during it) 7 deletes it, 9 saves it, 1 plays it again, any
other key (or silence) goes on; a new message that was heard is saved. Three wrong PINs
hang up.
"""

from __future__ import annotations

from ipbx.pbx.session import Session
from ipbx.pbx.voicemail import Mailbox, Message

PIN_ATTEMPTS = 3
OPTIONS_SECONDS = 4.0
MAX_GREETING_SECONDS = 60.0


async def mailbox_menu(session: Session, mailbox: Mailbox) -> None:
    for attempt in range(PIN_ATTEMPTS):
        prompt = (
            "Please enter your password, then press hash."
            if attempt == 0
            else ("That password is not right. Please try again.")
        )
        if await session.collect(16, 8.0, "#", prompt) == mailbox.pin:
            break
    else:
        await session.say("Goodbye.")
        return
    new, saved = mailbox.counts()
    choice = await session.collect(
        1, 3.0, "#", f"You have {new} new and {saved} saved messages. "
        "To listen to them press 1, to record your greeting press 0."
    )  # fmt: skip
    if choice == "0":
        await _record_greeting(session, mailbox)
        return
    for message in mailbox.messages("new") + mailbox.messages("saved"):
        await _review(session, mailbox, message)
    await session.say("No more messages. Goodbye.")


async def _review(session: Session, mailbox: Mailbox, message: Message) -> None:
    while True:
        pressed = await session.play(message.path, interruptible=True)
        key = pressed or await session.collect(
            1, OPTIONS_SECONDS, "", "To delete press 7, to save press 9, to hear it again press 1."
        )
        session.flush_digits()
        if key == "1":
            continue
        if key == "7":
            mailbox.delete(message)
            await session.say("Deleted.")
        elif message.folder == "new":
            mailbox.mark_saved(message)
            if key == "9":
                await session.say("Saved.")
        return


async def _record_greeting(session: Session, mailbox: Mailbox) -> None:
    session.flush_digits()
    await session.say("Record your greeting after the tone, then press hash.")
    await session.beep()
    path = mailbox.new_message_path()
    seconds = await session.record(path, MAX_GREETING_SECONDS)
    if seconds >= 1.0:
        mailbox.save_greeting("unavailable", path)
        await session.say("Your greeting is saved. Goodbye.")
    else:
        path.unlink(missing_ok=True)
