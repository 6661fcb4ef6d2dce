"""A conference room's live part: its members, who is muted or talking, the lock, the
moderators, and the room's one audio mixer (media/mixer.py), which exists while anybody
is in the room.

A member is a caller's leg that ipbx answered (a call flow's Session): joining puts its
endpoint into the mix, where it hears everyone but itself; leaving (a hang-up, a kick)
takes it out. In a room that waits for its moderator, a member who is not one listens to
the shared music on hold, out of the mix, until a moderator is in; when the last
moderator leaves, the others go back to the music (and out of the mix) until one comes
back. The room's recording, when configured, runs from its first mixed member to its
last; the file is crash-safe as a call's recording is (the mixer writes it with the
WAV header rewritten at every flush), and the call record of every member who was
mixed while it ran names it, so GET /calls/{call_id}/recording serves it.

Events (pbx/events.py): ``conference.joined``, ``conference.left`` and
``conference.talking`` with the room's name, the member's id and caller number.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from ipbx.media.codecs import Pcm
from ipbx.media.endpoint import MediaEndpoint, MediaError
from ipbx.media.moh import MusicOnHold
from ipbx.pbx.conference.config import ConferenceConfig
from ipbx.pbx.conference.model import ConferenceStatus, MemberStatus
from ipbx.pbx.events import RECORDING_READY, EventBus
from ipbx.pbx.session import Session

log = logging.getLogger("ipbx.conference")

CONFERENCE_JOINED = "conference.joined"
CONFERENCE_LEFT = "conference.left"
CONFERENCE_TALKING = "conference.talking"

# The chime the room hears when someone joins (rising) or leaves (falling): two short
# notes, far from the tones a test sends into a room.
TONE_RATE = 8000
_NOTE_SECONDS = 0.12
_JOIN_NOTES = (660.0, 880.0)


class RoomAudio(Protocol):
    """What a room needs of its mixer (media/mixer.py's Mixer has this shape)."""

    def join(self, endpoint: MediaEndpoint, muted: bool = False) -> None: ...

    def leave(self, endpoint: MediaEndpoint) -> None: ...

    def mute(self, endpoint: MediaEndpoint, muted: bool) -> None: ...

    def play(self, pcm: Pcm, rate: int) -> None: ...

    def play_to(self, endpoint: MediaEndpoint, pcm: Pcm, rate: int) -> None: ...

    def record(self, path: str | Path) -> None: ...

    def stop_recording(self) -> Path | None: ...

    def close(self) -> None: ...


class RoomConflict(Exception):
    """What the room's state does not allow now: a new member in a full or locked room,
    a recording started twice, or stopped when none runs."""


class MixerFactory(Protocol):
    """A new room's mixer (media/mixer.py's Mixer), told who starts and stops talking."""

    def __call__(self, *, on_talking: Callable[[MediaEndpoint, bool], None]) -> RoomAudio: ...


def chime(rising: bool, rate: int = TONE_RATE) -> Pcm:
    """The join (rising) or leave (falling) chime at `rate`."""
    notes = _JOIN_NOTES if rising else _JOIN_NOTES[::-1]
    t = np.arange(int(rate * _NOTE_SECONDS)) / rate
    fade = np.minimum(1.0, np.minimum(t, t[::-1]) * 200)  # 5 ms ramps: no clicks
    return np.concatenate(
        [(6000 * fade * np.sin(2 * np.pi * hz * t)).astype(np.int16) for hz in notes]
    )


@dataclass(eq=False)
class Member:
    id: int
    session: Session
    moderator: bool
    joined_at: float = field(default_factory=time.time)
    muted: bool = False
    talking: bool = False
    # On the music, out of the mix, until a moderator is in: the music's leave function.
    waiting: Callable[[], None] | None = None
    endpoint: MediaEndpoint = field(init=False)

    def __post_init__(self) -> None:
        # Kept: the call's end lets go of the leg before the member leaves the room.
        self.endpoint = self.session.leg.media

    @property
    def caller(self) -> str:
        return self.session.caller


class Room:
    """One conference room (its configuration can change under it on a reload)."""

    def __init__(
        self,
        config: ConferenceConfig,
        mixer: MixerFactory,
        events: EventBus,
        recordings: Path,
        music: MusicOnHold | None = None,
    ) -> None:
        self.config = config
        self.members: dict[int, Member] = {}
        self.locked = False
        self._new_mixer = mixer
        self._mixer: RoomAudio | None = None
        self._events = events
        self._recordings = recordings
        self._music = music
        self._ids = itertools.count(1)
        self.recording: Path | None = None
        self._recording_since = 0.0

    @property
    def name(self) -> str:
        return self.config.name

    def refusal(self, moderator: bool) -> str | None:
        """Why a caller cannot come in now ("full", "locked"), or None. A moderator
        enters a locked room; nobody enters a full one."""
        limit = self.config.max_members
        if limit and len(self.members) >= limit:
            return "full"
        if self.locked and not moderator:
            return "locked"
        return None

    def join(self, session: Session, moderator: bool) -> Member:
        """`session`'s caller comes in: into the mix, or onto the music while the room
        waits for its moderator."""
        member = Member(next(self._ids), session, moderator)
        self.members[member.id] = member
        log.info("conference %s: %s joins as member %d%s", self.name, member.caller,
                 member.id, " (moderator)" if moderator else "")  # fmt: skip
        self._publish(CONFERENCE_JOINED, member, moderator=moderator)
        if self._moderated() and not self._moderator_in():
            self._wait(member)
        else:
            self._chime(rising=True)
            self._mix(member)
            if moderator:
                for other in self.members.values():
                    if other.waiting is not None:
                        self._mix(other)
        return member

    def leave(self, member: Member) -> None:
        """The member is gone (hung up, kicked): out of the mix or off the music."""
        if self.members.pop(member.id, None) is None:
            return
        log.info("conference %s: member %d (%s) leaves", self.name, member.id, member.caller)
        if member.waiting is not None:
            member.waiting()
            member.waiting = None
        elif self._mixer is not None:
            self._mixer.leave(member.endpoint)
        self._publish(CONFERENCE_LEFT, member)
        if member.moderator and self._moderated() and not self._moderator_in():
            for other in self.members.values():
                if self._mixer is not None and other.waiting is None:
                    self._mixer.leave(other.endpoint)
                self._wait(other)
        if not any(m.waiting is None for m in self.members.values()):
            self._close_mixer()
        else:
            self._chime(rising=False)

    def find(self, member_id: int) -> Member:
        """The member with this id; LookupError when there is none."""
        member = self.members.get(member_id)
        if member is None:
            raise LookupError(f"no member {member_id} in conference {self.name}")
        return member

    def set_muted(self, member: Member, muted: bool) -> None:
        member.muted = muted
        # A member whose call just ended has left the mixer already (its endpoint closed).
        if self._mixer is not None and member.waiting is None and not member.endpoint.closed:
            self._mixer.mute(member.endpoint, muted)

    def mute_others(self) -> bool:
        """A moderator's *3: every member who is no moderator is muted, or unmuted when
        all of them already are; whether they are muted now."""
        others = [m for m in self.members.values() if not m.moderator]
        muted = not all(m.muted for m in others)
        for member in others:
            self.set_muted(member, muted)
        return muted

    def play_to(self, member: Member, pcm: Pcm, rate: int) -> None:
        """Play `pcm` to `member` alone, if it is in the mix (not waiting on the music)."""
        if self._mixer is not None and member.waiting is None and not member.endpoint.closed:
            self._mixer.play_to(member.endpoint, pcm, rate)

    def status(self) -> ConferenceStatus:
        recording = None if self.recording is None else self._relative(self.recording)
        members = tuple(
            MemberStatus(
                id=m.id,
                caller=m.caller,
                call_id=m.session.call.uid,
                moderator=m.moderator,
                muted=m.muted,
                talking=m.talking,
                waiting=m.waiting is not None,
                joined_at=m.joined_at,
            )
            for m in self.members.values()
        )
        return ConferenceStatus(self.name, self.locked, recording, members)

    def start_recording(self) -> str | None:
        """Record the room's mix from now on (the name of the file under the recordings
        folder); None when nobody is mixed yet (the recording starts with the first)
        or it records already."""
        if self._mixer is None or self.recording is not None:
            return None
        day = time.strftime("%Y-%m-%d", time.gmtime())
        path = self._recordings / day / f"conference-{self.name}-{int(time.time() * 1000)}.wav"
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._mixer.record(path)
        except (OSError, MediaError) as exc:
            log.warning("conference %s: cannot record: %s", self.name, exc)
            return None
        self.recording, self._recording_since = path, time.time()
        for member in self.members.values():
            if member.waiting is None:
                member.session.call.room_recording = path
        log.info("conference %s recording to %s", self.name, path)
        return self._relative(path)

    def stop_recording(self) -> str | None:
        """Close the recording's file and publish recording.ready; its name, or None
        when the room was not recording."""
        if self._mixer is None or self.recording is None:
            return None
        self._mixer.stop_recording()
        name = self._relative(self.recording)
        seconds = round(time.time() - self._recording_since, 3)
        self.recording = None
        self._events.publish(
            RECORDING_READY, {"conference": self.name, "recording": name, "seconds": seconds}
        )
        return name

    def close(self) -> None:
        """Reload removed the room, or the PBX stops: the mixer (and recording) end."""
        self._close_mixer()

    # --- inside -------------------------------------------------------------------------------

    def _moderated(self) -> bool:
        return self.config.wait_for_moderator

    def _moderator_in(self) -> bool:
        return any(m.moderator for m in self.members.values())

    def _mix(self, member: Member) -> None:
        if member.waiting is not None:
            member.waiting()
            member.waiting = None
        if self._mixer is None:
            self._mixer = self._new_mixer(on_talking=self._talking)
            if self.config.record:
                self.start_recording()
        self._mixer.join(member.endpoint, member.muted)
        if self.recording is not None:
            member.session.call.room_recording = self.recording

    def _wait(self, member: Member) -> None:
        member.talking = False
        member.waiting = lambda: None
        if self._music is not None:
            try:
                member.waiting = self._music.listen(member.endpoint)
            except MediaError as exc:
                log.info("conference %s: member %d waits in silence: %s", self.name,
                         member.id, exc)  # fmt: skip

    def _close_mixer(self) -> None:
        self.stop_recording()
        if self._mixer is not None:
            self._mixer.close()
            self._mixer = None

    def _chime(self, rising: bool) -> None:
        if self.config.announce_join and self._mixer is not None:
            self._mixer.play(chime(rising), TONE_RATE)

    def _talking(self, endpoint: MediaEndpoint, talking: bool) -> None:
        for member in self.members.values():
            if member.endpoint is endpoint:
                member.talking = talking
                self._publish(CONFERENCE_TALKING, member, talking=talking)
                return

    def _publish(self, kind: str, member: Member, **data: object) -> None:
        self._events.publish(
            kind,
            {
                "conference": self.name,
                "member": member.id,
                "caller": member.caller,
                "call_id": member.session.call.uid,
                **data,
            },
        )

    def _relative(self, path: Path) -> str:
        return str(path.relative_to(self._recordings))
