"""The voicemail page: every mailbox's messages, newest first, each playing in the page
and removable by an admin (the phones' message waiting lamps are told, as the mailbox
menu and DELETE /voicemail/... do). Mailboxes are the default tenant's."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.responses import FileResponse, RedirectResponse

from ipbx.pbx.events import DEFAULT_TENANT
from ipbx.pbx.voicemail import Mailbox, Message
from ipbx.web.visitor import editor, page, visitor

if TYPE_CHECKING:
    from ipbx.api.services import PbxServices


def _newest_first(box: Mailbox) -> list[Message]:
    found = box.messages("new") + box.messages("saved")
    return sorted(found, key=lambda m: (m.received, m.id), reverse=True)


def add_voicemail_page(app: FastAPI, pbx: PbxServices) -> None:
    def mailboxes(tenant: str) -> list[Mailbox]:
        return sorted(pbx.mailboxes, key=lambda b: b.number) if tenant == DEFAULT_TENANT else []

    def found(tenant: str, extension: str, message_id: str) -> tuple[Mailbox, Message]:
        box = next((b for b in mailboxes(tenant) if b.number == extension), None)
        message = box.find(message_id) if box is not None else None
        if box is None or message is None:
            raise HTTPException(404, f"message_id: no message {message_id} in {extension}")
        return box, message

    @app.get("/admin/{tenant}/voicemail", include_in_schema=False)
    async def voicemail(request: Request, tenant: str) -> Response:
        who = await visitor(pbx, request, tenant)
        boxes = [(box, _newest_first(box)) for box in mailboxes(tenant)]
        response: Response = page(request, "voicemail.html", who, boxes=boxes)
        return response

    @app.get("/admin/{tenant}/voicemail/{extension}/{message_id}", include_in_schema=False)
    async def message(request: Request, tenant: str, extension: str, message_id: str) -> Response:
        await visitor(pbx, request, tenant)
        _, message = found(tenant, extension, message_id)
        return FileResponse(message.path, media_type="audio/wav")

    @app.post("/admin/{tenant}/voicemail/{extension}/{message_id}/delete", include_in_schema=False)
    async def delete(request: Request, tenant: str, extension: str, message_id: str) -> Response:
        await editor(pbx, request, tenant)
        box, message = found(tenant, extension, message_id)
        box.delete(message)
        return RedirectResponse(f"/admin/{tenant}/voicemail", 303)
