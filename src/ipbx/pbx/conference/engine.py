"""The conference app: the call flow of `conference:NAME` and what the API does to rooms.

A caller sent to a room is answered, asked for the PIN when the room has one (three
tries, then "That PIN is not valid. Goodbye." and a hang-up), hears the join chime and
comes in (pbx/conference/room.py). A full room, or a locked one for anybody but a
moderator, says so and hangs up. In the room, keys are the member's menu:

- ``*1``: mute or unmute oneself (any member);
- ``*2``: lock or unlock the room (a moderator); a locked room lets no new member in;
- ``*3``: mute every member who is no moderator, or unmute them all (a moderator).

Each key is answered to the member alone ("Muted.", "The conference is locked.", ...),
while the others go on hearing the room.

Through the API, members are muted, unmuted and kicked (their call ends), the room's
recording is started and stopped, and a number is invited into the room (`dial`): an
extension's phones ring, an outside number is called through the outbound routes (as
the PBX's own routing calls one: any route, the route's caller ID or else the room's
name), and whoever answers joins as a member, without a PIN.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

from ipbx.config import Config
from ipbx.media.audiofile import AudioFileError, read_audio
from ipbx.media.endpoint import MediaError
from ipbx.media.tts import TtsError
from ipbx.pbx.call.engine import Calls
from ipbx.pbx.call.model import Call, CallState, Leg, new_call_id
from ipbx.pbx.conference.config import ConferenceConfig
from ipbx.pbx.conference.model import ConferenceStatus
from ipbx.pbx.conference.room import Member, MixerFactory, Room, RoomConflict, chime
from ipbx.pbx.dialplan import OutboundCall
from ipbx.pbx.events import EventBus
from ipbx.pbx.session import Prompts, Session

log = logging.getLogger("ipbx.conference")

PIN_TRIES = 3
# Seconds a caller has to start typing the PIN, and a member between * and its key.
PIN_SECONDS = 10.0
COMMAND_SECONDS = 3.0
# How long one wait for a key in the room lasts: the loop just goes round.
_IDLE_SECONDS = 3600.0
# How long an invited number rings.
INVITE_RING_SECONDS = 30.0

ASK_PIN = "Please enter the conference PIN, then press hash."
ASK_MODERATOR_PIN = "Enter the moderator PIN, or press hash to join."
RETRY_PIN = "That PIN is not valid. Please try again."
BAD_PIN = "That PIN is not valid. Goodbye."
REFUSED = {
    "full": "The conference is full. Goodbye.",
    "locked": "The conference is locked. Goodbye.",
}


class Conferences:
    """Every conference room (of `config`, then of each reload's: `update`), each mixed
    by its own `mixer` while anybody is in it; the router runs `run` for
    `conference:NAME`, the API reads `status` and mutes, kicks and invites."""

    def __init__(self, calls: Calls, events: EventBus, mixer: MixerFactory, config: Config) -> None:
        self.calls = calls
        self.events = events
        self.mixer = mixer
        # Members who wait for their moderator hear the music on hold of held calls.
        self.music = calls.hold.music
        self.recordings = config.data_dir / "recordings"
        self.prompts = Prompts(config.data_dir / "prompts")
        self.rooms: dict[str, Room] = {}
        self.update(config.conferences)

    def update(self, configs: Sequence[ConferenceConfig]) -> None:
        """Take up the rooms' configuration (at start and after each reload); members of
        a room that stays stay in it. A room removed ends: its members are hung up."""
        rooms: dict[str, Room] = {}
        for config in configs:
            room = self.rooms.pop(config.name, None)
            if room is None:
                room = Room(config, self.mixer, self.events, self.recordings, self.music)
            room.config = config
            rooms[config.name] = room
        for gone in self.rooms.values():
            for member in list(gone.members.values()):
                self._hang_up(gone, member)
            gone.close()
        self.rooms = rooms

    def close(self) -> None:
        for room in self.rooms.values():
            room.close()

    # --- the call flow -------------------------------------------------------------------------

    async def run(self, session: Session, name: str) -> None:
        """The call flow of `conference:NAME` for the caller `session` holds."""
        room = self.rooms.get(name)
        if room is None:  # removed by a reload while the caller was on its way
            await session.hangup(404)
            return
        # The room mixes at its best member's rate: a wideband phone is answered wideband.
        await session.answer(wideband=True)
        moderator = await ask_pin(session, room.config)
        if moderator is None:
            await session.say(BAD_PIN)
            await session.hangup()
            return
        await self.enter(session, room, moderator)

    async def enter(self, session: Session, room: Room, moderator: bool) -> None:
        """The caller comes into `room` (unless it is full or locked) and stays until
        its call ends; then it leaves."""
        refusal = room.refusal(moderator)
        if refusal is None:
            media = session.leg.media
            try:
                await media.play(chime(rising=True, rate=media.pcm_rate))
            except MediaError as exc:
                log.info("%s: join chime skipped: %s", session.call.id, exc)
            refusal = room.refusal(moderator)  # others may have come in meanwhile
        if refusal is not None:
            log.info("conference %s: %s refused, the room is %s", room.name, session.caller,
                     refusal)  # fmt: skip
            await session.say(REFUSED[refusal])
            await session.hangup()
            return
        member = room.join(session, moderator)
        try:
            await key_menu(session, room, member.id)
        finally:
            room.leave(member)

    # --- the API's ---------------------------------------------------------------------------

    def room(self, name: str) -> Room:
        """The room named `name`; LookupError when there is none."""
        room = self.rooms.get(name)
        if room is None:
            raise LookupError(f"no conference {name}")
        return room

    def status(self, name: str) -> ConferenceStatus:
        """The live picture of a room; LookupError when there is none."""
        return self.room(name).status()

    def mute(self, name: str, member_id: int, muted: bool) -> ConferenceStatus:
        """Mute or unmute a member; LookupError for no such room or member."""
        room = self.room(name)
        room.set_muted(room.find(member_id), muted)
        return room.status()

    def record(self, name: str, on: bool) -> ConferenceStatus:
        """Start or stop recording the room's mix; LookupError for no such room,
        RoomConflict when it is recording already, has nobody to record, or is not
        recording."""
        room = self.room(name)
        if on and room.start_recording() is None:
            state = "records already" if room.recording is not None else "has nobody in it"
            raise RoomConflict(f"conference {name} {state}")
        if not on and room.stop_recording() is None:
            raise RoomConflict(f"conference {name} is not recording")
        return room.status()

    def kick(self, name: str, member_id: int) -> None:
        """End the member's call; LookupError for no such room or member."""
        room = self.room(name)
        member = room.find(member_id)
        log.info("conference %s: member %d kicked", name, member_id)
        self._hang_up(room, member)

    def _hang_up(self, room: Room, member: Member) -> None:
        room.leave(member)  # at once: the room's picture from now on is without it
        self.calls.hang_up(member.session.call)

    def dial(self, name: str, number: str) -> Call:
        """Invite `number` into the room: ring the extension's phones, or call the
        outside number through its route's trunks; whoever answers joins as a member.
        LookupError for no such room, or a number that is no extension and no route
        takes; RoomConflict when the room is full or locked. The call is returned as it
        starts ringing."""
        room = self.room(name)
        refusal = room.refusal(moderator=False)
        if refusal is not None:
            raise RoomConflict(f"conference {name} is {refusal}")
        route = self.calls.reach(number, None, name)
        # The invited party is the member, as a caller would be; it sees the room
        # calling.
        call = Call(new_call_id(), number, name, placed=True)
        call.route = route[0] if route is not None else None
        call.path.append(f"conference:{name}")
        self.calls.calls[call.id] = call
        self.calls.publish_start(call)
        self.calls.spawn_task(self._invite(call, room, number, route))
        return call

    async def _invite(
        self, call: Call, room: Room, number: str, outside: tuple[OutboundCall, str] | None
    ) -> None:
        calls = self.calls
        if outside is None:
            status = await calls.dialing.dial(call, [number], INVITE_RING_SECONDS)
        else:
            route, caller_id = outside
            status = await calls.trunks.dial(call, route, caller_id, INVITE_RING_SECONDS)
        leg = call.caller
        if status != 200 or leg is None or call.ended:
            log.info("%s: %s, invited to conference %s, did not answer (%d)", call.id,
                     number, room.name, status)  # fmt: skip
            call.status = status
            calls.end(call)
            return
        call.state = CallState.ANSWERED
        call.answered = time.time()
        calls.publish_answer(call, leg)

        async def member(leg: Leg) -> None:
            session = Session(calls, call, leg, self.prompts, answered=True)
            await self.enter(session, room, moderator=False)

        await calls.flows.run(call, leg, member)


async def ask_pin(session: Session, config: ConferenceConfig) -> bool | None:
    """Whether the caller is a moderator (True) or a member (False), as the PIN it
    entered says; None when it entered no valid one in PIN_TRIES tries. A room with
    no PIN asks nothing; one with only a moderator PIN takes no entry as a member."""
    if config.pin is None and config.moderator_pin is None:
        return False
    prompt = ASK_PIN if config.pin is not None else ASK_MODERATOR_PIN
    for _ in range(PIN_TRIES):
        digits = await session.collect(16, PIN_SECONDS, "#", prompt)
        if digits == config.moderator_pin:
            return True
        if digits == (config.pin or ""):
            return False
        prompt = RETRY_PIN
    return None


async def key_menu(session: Session, room: Room, member_id: int) -> None:
    """The member's keys in the room (the module documentation lists them), until its
    call ends (the task is cancelled)."""
    while True:
        if await session.collect(1, _IDLE_SECONDS, terminators="") != "*":
            continue
        key = await session.collect(1, COMMAND_SECONDS, terminators="")
        member = room.members.get(member_id)
        if member is None:
            return
        if key == "1":
            room.set_muted(member, not member.muted)
            said = "Muted." if member.muted else "Unmuted."
        elif key == "2" and member.moderator:
            room.locked = not room.locked
            state = "locked" if room.locked else "unlocked"
            log.info("conference %s %s by member %d", room.name, state, member_id)
            said = f"The conference is {state}."
        elif key == "3" and member.moderator:
            said = f"All other members are {'muted' if room.mute_others() else 'unmuted'}."
        else:
            continue
        await tell(session, room, member, said)


async def tell(session: Session, room: Room, member: Member, text: str) -> None:
    """Say `text` to `member` alone; speech that cannot be made is logged and skipped."""
    rate = member.endpoint.pcm_rate
    try:
        pcm = await asyncio.to_thread(read_audio, await session.prompt(text), rate)
    except (TtsError, AudioFileError) as exc:
        log.warning("conference %s: %r not said: %s", room.name, text, exc)
        return
    room.play_to(member, pcm, rate)
