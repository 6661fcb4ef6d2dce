"""The call history: calls newest first, searched by number and filtered by result and
day; each with its legs' codec, loss, jitter and MOS, and its recording playing in the
page. The same store query as GET /calls."""

from __future__ import annotations

import time
from datetime import date
from typing import TYPE_CHECKING, Annotated, get_args

from fastapi import FastAPI, Query, Request, Response
from fastapi.responses import FileResponse

from ipbx.api.recordings import recording_file
from ipbx.pbx.call import outcome
from ipbx.store import Store
from ipbx.web.visitor import page, visitor

if TYPE_CHECKING:
    from ipbx.api.services import PbxServices

PAGE = 50


def day_start(day: date | None, days_after: int = 0) -> float | None:
    """The epoch of local midnight starting `day` (plus `days_after`); None for None."""
    if day is None:
        return None
    return time.mktime((day.year, day.month, day.day + days_after, 0, 0, 0, 0, 0, -1))


def add_call_pages(app: FastAPI, pbx: PbxServices) -> None:
    @app.get("/admin/{tenant}/calls", include_in_schema=False)
    async def calls(
        request: Request,
        tenant: str,
        number: Annotated[str, Query(max_length=64)] = "",
        result: Annotated[str, Query(max_length=32)] = "",
        since: date | None = None,
        until: date | None = None,
        offset: Annotated[int, Query(ge=0)] = 0,
    ) -> Response:
        who = await visitor(pbx, request, tenant)
        total, records = await pbx.store.run(
            Store.search_call_records,
            tenant,
            since=day_start(since),
            until=day_start(until, 1),  # the whole of the last day
            number=number.strip() or None,
            result=result or None,
            limit=PAGE,
            offset=offset,
        )
        response: Response = page(
            request, "calls.html", who, total=total, records=records, offset=offset,
            page_size=PAGE, results=get_args(outcome.Result),
            query={"number": number, "result": result, "since": since or "",
                   "until": until or ""},
        )  # fmt: skip
        return response

    @app.get("/admin/{tenant}/calls/{call_id}/recording", include_in_schema=False)
    async def recording(request: Request, tenant: str, call_id: str) -> Response:
        await visitor(pbx, request, tenant)
        record = await pbx.store.run(Store.call_record, call_id, tenant)
        path = recording_file(pbx.config.data_dir, record, call_id)
        return FileResponse(path, media_type="audio/wav")
