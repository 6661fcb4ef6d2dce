"""Conference rooms through the API: the live picture of each room (GET /conferences,
GET /conferences/{name}), muting, unmuting and kicking a member, and inviting an
extension or an outside number into a room (POST /conferences/{name}/dial). The rooms
live on the event loop: every route is `async`.
"""

# No `from __future__ import annotations`: FastAPI reads the endpoints' annotations at
# run time, and the token dependencies are names local to add_conference_routes.
from collections.abc import Callable
from typing import Annotated, Literal

from fastapi import Depends, FastAPI, HTTPException, Path
from pydantic import BaseModel, Field

from ipbx.api import models
from ipbx.api.models import AUTH_ERRORS
from ipbx.api.paging import Limit, Offset, not_found, page
from ipbx.api.services import ConferenceDesk, PbxServices
from ipbx.pbx.conference.model import ConferenceStatus
from ipbx.pbx.conference.room import RoomConflict
from ipbx.store import ApiTokenRecord

RoomName = Annotated[str, Path(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
MemberId = Annotated[int, Path(ge=1)]


class Invitation(BaseModel):
    number: str = Field(
        pattern=r"^\+?[0-9]{1,32}$",
        description="the extension, or the outside number (through the outbound routes), "
        "to call into the room",
    )


def add_conference_routes(
    app: FastAPI,
    pbx: PbxServices,
    needs_read: Callable[..., ApiTokenRecord],
    needs_admin: Callable[..., ApiTokenRecord],
    sees_configuration: Callable[[ApiTokenRecord], bool],
) -> None:
    """`sees_configuration(token)`: whether the token's tenant owns the configuration
    file's rooms (app.py's system_state); another tenant sees no room."""
    Reader = Annotated[ApiTokenRecord, Depends(needs_read)]
    Admin = Annotated[ApiTokenRecord, Depends(needs_admin)]
    errors = {**AUTH_ERRORS, **not_found("`detail` names the room or member not found")}

    def desk(token: ApiTokenRecord, name: str) -> ConferenceDesk:
        rooms = pbx.conferences
        if not sees_configuration(token) or name not in rooms.rooms:
            raise HTTPException(404, f"name: no conference {name}")
        return rooms

    @app.get(
        "/conferences",
        response_model=models.Page[ConferenceStatus],
        responses=AUTH_ERRORS,
        tags=["conferences"],
    )
    async def list_conferences(
        token: Reader, limit: Limit = 50, offset: Offset = 0
    ) -> models.Page[ConferenceStatus]:
        """Every room's live picture, by name."""
        rooms = pbx.conferences
        names = sorted(rooms.rooms) if sees_configuration(token) else []
        return page([rooms.status(name) for name in names], limit, offset)

    @app.get(
        "/conferences/{name}",
        response_model=ConferenceStatus,
        responses=errors,
        tags=["conferences"],
    )
    async def get_conference(token: Reader, name: RoomName) -> ConferenceStatus:
        """One room's live picture: whether it is locked, the file it records to, and
        its members (caller, moderator, muted, talking, waiting for a moderator, when
        they joined)."""
        return desk(token, name).status(name)

    @app.post(
        "/conferences/{name}/members/{member}/{action}",
        response_model=ConferenceStatus,
        responses=errors,
        tags=["conferences"],
    )
    async def act_on_member(
        token: Admin,
        name: RoomName,
        member: MemberId,
        action: Annotated[Literal["mute", "unmute", "kick"], Path()],
    ) -> ConferenceStatus:
        """Mute or unmute a member, or kick it (its call ends). Answers the room's
        picture after the change."""
        rooms = desk(token, name)
        try:
            if action == "kick":
                rooms.kick(name, member)
            else:
                rooms.mute(name, member, action == "mute")
        except LookupError as exc:
            raise HTTPException(404, f"member: {exc}") from None
        return rooms.status(name)

    @app.post(
        "/conferences/{name}/recording",
        response_model=ConferenceStatus,
        responses={**errors, 409: {"model": models.Problem}},
        tags=["conferences"],
    )
    async def record(
        token: Admin, name: RoomName, order: models.RecordingControl
    ) -> ConferenceStatus:
        """Start or stop recording the room's mix (a room with `record: true` records
        from its first member on); stopping closes the file and publishes
        recording.ready. 409 when the room records already, has nobody in it, or is
        not recording."""
        rooms = desk(token, name)
        try:
            return rooms.record(name, order.action == "start")
        except RoomConflict as exc:
            raise HTTPException(409, f"action: {exc}") from None

    @app.post(
        "/conferences/{name}/dial",
        response_model=models.Originated,
        status_code=202,
        responses={**errors, 409: {"model": models.Problem, "description": "locked or full"}},
        tags=["conferences"],
    )
    async def invite(token: Admin, name: RoomName, invitation: Invitation) -> models.Originated:
        """Invite an extension (its phones ring) or an outside number (called through
        the outbound routes, showing the route's caller ID, else the room's name): whoever
        answers joins the room as a member (no PIN). 404 for a number that is no
        extension and no route takes. Follow the call by its call.* events and the
        conference.joined event."""
        rooms = desk(token, name)
        try:
            call = rooms.dial(name, invitation.number)
        except RoomConflict as exc:
            raise HTTPException(409, f"name: {exc}") from None
        except LookupError as exc:
            raise HTTPException(404, f"number: {exc}") from None
        return models.Originated(call_id=call.uid)
