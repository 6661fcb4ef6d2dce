"""Text messages through the API: POST /messages sends one from an extension to an
extension or an outside number (as the extension's phone would, pbx/messaging.py);
GET /messages lists the tenant's messages with their delivery status. The events
message.received and message.status reach webhooks and the live feed like any other.
"""

# No `from __future__ import annotations`: FastAPI reads the endpoints' annotations at
# run time, and the token dependencies are names local to add_message_routes.
from collections.abc import Callable
from typing import Annotated, Literal

from fastapi import Depends, FastAPI, HTTPException, Query
from pydantic import BaseModel, Field

from ipbx.api import models
from ipbx.api.models import AUTH_ERRORS
from ipbx.api.paging import Limit, Offset
from ipbx.api.services import PbxServices
from ipbx.pbx.messaging import MAX_BODY
from ipbx.store import ApiTokenRecord, MessageRecord


class NewMessage(BaseModel):
    sender: str = Field(alias="from", pattern=r"^[0-9]{1,32}$", description="an extension")
    to: str = Field(pattern=r"^\+?[0-9*#]{1,32}$", description="an extension or an outside number")
    text: str = Field(min_length=1, max_length=MAX_BODY, description="UTF-8 text")


class Message(BaseModel):
    """A text message and its delivery status (pending: waiting for the extension's
    phone to register; delivered; failed)."""

    model_config = {"serialize_by_alias": True}

    id: int
    time: float
    direction: Literal["internal", "inbound", "outbound"]
    sender: str = Field(alias="from")
    to: str
    content_type: str
    text: str
    status: Literal["pending", "delivered", "failed"]
    status_time: float
    trunk: str | None

    @classmethod
    def of(cls, record: MessageRecord) -> "Message":
        return cls.model_validate(
            {
                "id": record.id,
                "time": record.time,
                "direction": record.direction,
                "from": record.sender,
                "to": record.recipient,
                "content_type": record.content_type,
                "text": record.body,
                "status": record.status,
                "status_time": record.status_time,
                "trunk": record.trunk,
            }
        )


def add_message_routes(
    app: FastAPI,
    pbx: PbxServices,
    needs_read: Callable[..., ApiTokenRecord],
    needs_admin: Callable[..., ApiTokenRecord],
    sees_configuration: Callable[[ApiTokenRecord], bool],
) -> None:
    """`sees_configuration(token)`: whether the token's tenant owns the extensions the
    PBX serves (app.py's system_state); another tenant can send none."""
    Reader = Annotated[ApiTokenRecord, Depends(needs_read)]
    Admin = Annotated[ApiTokenRecord, Depends(needs_admin)]

    @app.post(
        "/messages",
        status_code=202,
        response_model=Message,
        responses={**AUTH_ERRORS, 422: {"model": models.Problem}},
        tags=["messages"],
    )
    async def send_message(token: Admin, message: NewMessage) -> Message:
        """Send a text message from an extension, as its phone would: to an extension
        (its phones, or stored until one registers) or to an outside number (through
        an outbound route's trunk with `messaging: true`). Answers the stored message;
        its delivery is reported by message.status and GET /messages."""
        if not sees_configuration(token):
            raise HTTPException(422, f"from: no extension {message.sender}")
        try:
            record = await pbx.messaging.send(message.sender, message.to, message.text)
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from None
        return Message.of(record)

    @app.get(
        "/messages",
        response_model=models.Page[Message],
        responses=AUTH_ERRORS,
        tags=["messages"],
    )
    async def list_messages(
        token: Reader,
        limit: Limit = 50,
        offset: Offset = 0,
        extension: Annotated[
            str | None, Query(max_length=64, description="sent or received by this number")
        ] = None,
    ) -> models.Page[Message]:
        """The tenant's text messages, newest first."""
        total, records = await pbx.store.run(
            lambda store: store.list_messages(extension, limit, offset, token.tenant)
        )
        items = [Message.of(record) for record in records]
        return models.Page[Message](total=total, limit=limit, offset=offset, items=items)
