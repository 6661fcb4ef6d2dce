"""Uploading an announcement's audio: a WAV file sent from the announcements page is
kept as DATA_DIR/prompts/NAME.wav and the announcement NAME plays it (added, or changed
to it), through the API's service layer as every change is. A file that is not a WAV
is refused next to its field and nothing is written."""

from __future__ import annotations

import io
import wave
from typing import TYPE_CHECKING

from fastapi import FastAPI, Request, Response
from fastapi.responses import RedirectResponse
from starlette.datastructures import UploadFile

from ipbx.api.configuration import add_item, replace_item, tenant_items
from ipbx.pbx.provisioning import KINDS
from ipbx.web.forms import Errors, attempt, build
from ipbx.web.items import fields
from ipbx.web.visitor import editor, page

if TYPE_CHECKING:
    from ipbx.api.services import PbxServices

# Ten minutes of 16-bit 16 kHz mono: more is not an announcement.
MAX_BYTES = 20 * 1024 * 1024


def _wav_problem(data: bytes) -> str:
    """Why `data` is no WAV a prompt can play ("" when it is one)."""
    if len(data) > MAX_BYTES:
        return f"at most {MAX_BYTES // (1024 * 1024)} MB"
    try:
        with wave.open(io.BytesIO(data)) as wav:
            if wav.getnframes() == 0:
                return "the recording is empty"
    except (wave.Error, EOFError) as exc:
        return f"not a WAV file ({exc})"
    return ""


def add_prompt_upload(app: FastAPI, pbx: PbxServices) -> None:
    kind = KINDS["announcements"]

    @app.post("/admin/{tenant}/announcements/upload", include_in_schema=False)
    async def upload(request: Request, tenant: str) -> Response:
        who, form = await editor(pbx, request, tenant)
        audio = (await request.form()).get("audio")
        name = form.get("name", "").strip()
        _, errors = build(kind, {"name": name, "text": "-"})
        data = await audio.read(MAX_BYTES + 1) if isinstance(audio, UploadFile) else b""
        problem = _wav_problem(data) if data else "choose a WAV file"
        if problem:
            errors["audio"] = problem
        if not errors:
            errors = await _keep(pbx, tenant, name, data)
        if errors:
            response: Response = page(
                request, "items.html", who, 422, kind=kind, fields=fields(kind),
                items=tenant_items(pbx, kind, tenant), form={}, errors=errors,
                upload={"name": name},
            )  # fmt: skip
            return response
        return RedirectResponse(f"/admin/{tenant}/config/announcements", 303)


async def _keep(pbx: PbxServices, tenant: str, name: str, data: bytes) -> Errors:
    """Write the file and point the announcement at it; the file goes again when the
    change is refused."""
    kind = KINDS["announcements"]
    folder = pbx.config.data_dir / "prompts"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.wav"
    existed = path.exists()
    previous = path.read_bytes() if existed else b""
    path.write_bytes(data)
    item, errors = build(kind, {"name": name, "file": str(path)})
    if item is not None:
        exists = any(kind.key(i) == name for i in tenant_items(pbx, kind, tenant))
        change = (
            replace_item(pbx, kind, tenant, name, item)
            if exists
            else add_item(pbx, kind, tenant, item)
        )
        _, errors = await attempt(change, {"name", "file"})
    if errors:
        if existed:
            path.write_bytes(previous)
        else:
            path.unlink()
    return errors
