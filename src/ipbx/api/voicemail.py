"""Voicemail through the API: GET /voicemail/{extension} lists a mailbox's messages,
GET /voicemail/{extension}/{message_id} downloads one as WAV, DELETE removes it (admin).

Mailboxes are those of the configuration file's extensions with `voicemail:`, which are
the default tenant's: a token of another tenant finds no mailbox. Reading a message here
does not mark it old (a GET changes nothing); deleting one updates the phones' message
waiting lamps as the mailbox menu does.
"""

# No `from __future__ import annotations`: FastAPI reads the endpoints' annotations at
# run time, and the token dependencies are names local to add_voicemail_routes.
from collections.abc import Callable
from typing import Annotated, Literal

from fastapi import Depends, FastAPI, HTTPException, Path, Query
from fastapi.responses import FileResponse, Response
from pydantic import BaseModel, Field

from ipbx.api import models
from ipbx.api.models import AUTH_ERRORS
from ipbx.api.paging import Limit, Offset, not_found, page
from ipbx.pbx.voicemail import Mailbox, Mailboxes, Message
from ipbx.store import ApiTokenRecord

MessageStatus = Literal["new", "old"]
ExtensionNumber = Annotated[str, Path(pattern=r"^[0-9]{1,32}$")]
MessageId = Annotated[str, Path(pattern=r"^[0-9A-Za-z_-]{1,64}$")]


class VoicemailMessage(BaseModel):
    id: str = Field(description="its id in the mailbox, for download and delete")
    caller: str = Field(description="the caller's number, or `unknown`")
    received: float = Field(description="epoch seconds")
    duration: float = Field(ge=0, description="seconds")
    status: MessageStatus = Field(description="new: not listened to yet; old: saved")


def _message(message: Message) -> VoicemailMessage:
    return VoicemailMessage(
        id=message.id,
        caller=message.caller,
        received=message.received.timestamp(),
        duration=round(message.seconds, 3),
        status="new" if message.folder == "new" else "old",
    )


def add_voicemail_routes(
    app: FastAPI,
    mailboxes: Mailboxes,
    needs_read: Callable[..., ApiTokenRecord],
    needs_admin: Callable[..., ApiTokenRecord],
    sees_configuration: Callable[[ApiTokenRecord], bool],
) -> None:
    """`sees_configuration(token)`: whether the token's tenant owns the configuration
    file's extensions (app.py's system_state)."""
    Reader = Annotated[ApiTokenRecord, Depends(needs_read)]
    Admin = Annotated[ApiTokenRecord, Depends(needs_admin)]
    unknown = not_found("`detail` names the extension or message_id not found")

    def mailbox(token: ApiTokenRecord, extension: str) -> Mailbox:
        box = mailboxes.get(extension) if sees_configuration(token) else None
        if box is None:
            raise HTTPException(404, f"extension: no mailbox {extension}")
        return box

    def message(box: Mailbox, message_id: str) -> Message:
        found = box.find(message_id)
        if found is None:
            raise HTTPException(404, f"message_id: no message {message_id} in mailbox {box.number}")
        return found

    @app.get(
        "/voicemail/{extension}",
        response_model=models.Page[VoicemailMessage],
        responses={**AUTH_ERRORS, **unknown},
        tags=["voicemail"],
    )
    def list_messages(
        token: Reader,
        extension: ExtensionNumber,
        limit: Limit = 50,
        offset: Offset = 0,
        status: Annotated[MessageStatus | None, Query()] = None,
    ) -> models.Page[VoicemailMessage]:
        """The mailbox's messages, newest first."""
        box = mailbox(token, extension)
        items = [_message(m) for m in box.messages("new") + box.messages("saved")]
        items.sort(key=lambda m: (m.received, m.id), reverse=True)
        if status is not None:
            items = [m for m in items if m.status == status]
        return page(items, limit, offset)

    @app.get(
        "/voicemail/{extension}/{message_id}",
        response_class=FileResponse,
        responses={
            200: {"content": {"audio/wav": {}}, "description": "the message (WAV)"},
            **AUTH_ERRORS,
            **unknown,
        },
        tags=["voicemail"],
    )
    def get_message(token: Reader, extension: ExtensionNumber, message_id: MessageId) -> Response:
        """The recorded message as a WAV file (it stays new)."""
        found = message(mailbox(token, extension), message_id)
        return FileResponse(found.path, media_type="audio/wav", filename=f"{found.id}.wav")

    @app.delete(
        "/voicemail/{extension}/{message_id}",
        status_code=204,
        responses={**AUTH_ERRORS, **unknown},
        tags=["voicemail"],
    )
    async def delete_message(
        token: Admin, extension: ExtensionNumber, message_id: MessageId
    ) -> Response:
        """Remove a message (admin); the extension's phones are told the new counts."""
        # On the event loop, not in a worker thread: the message waiting NOTIFYs that
        # the deletion sends go through the SIP endpoint, which belongs to the loop.
        box = mailbox(token, extension)
        box.delete(message(box, message_id))
        return Response(status_code=204)
