"""A conference room's live picture, as the API shows it (GET /conferences/{name})."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class MemberStatus:
    id: int  # the member's number in its room, from 1, never reused while the room lives
    caller: str  # the caller's number (its caller ID), or the number invited
    call_id: str  # the member's call (its call record's id)
    moderator: bool
    muted: bool
    talking: bool
    waiting: bool  # on music on hold until a moderator is in (wait_for_moderator)
    joined_at: float  # epoch seconds


@dataclass(frozen=True, slots=True)
class ConferenceStatus:
    name: str
    locked: bool
    recording: str | None  # the file being recorded, under the recordings folder
    members: tuple[MemberStatus, ...]
