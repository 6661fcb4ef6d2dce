"""The analytics page: the figures of GET /analytics (answered, missed, abandoned,
speed of answer, service level, MOS ...) over a span of days, in all and by day, hour,
extension or ring group, with a bar chart of calls offered and answered per group
drawn in HTML (no script)."""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING, Annotated, get_args

from fastapi import FastAPI, Query, Request, Response

from ipbx.pbx.analytics import DEFAULT_SERVICE_LEVEL_SECONDS, Grouping, figures, grouped
from ipbx.store import Store
from ipbx.web.calls import day_start
from ipbx.web.visitor import page, visitor

if TYPE_CHECKING:
    from ipbx.api.services import PbxServices


def add_analytics_page(app: FastAPI, pbx: PbxServices) -> None:
    @app.get("/admin/{tenant}/analytics", include_in_schema=False)
    async def analytics(
        request: Request,
        tenant: str,
        since: date | None = None,
        until: date | None = None,
        by: Annotated[Grouping, Query()] = "day",
    ) -> Response:
        who = await visitor(pbx, request, tenant)
        records = await pbx.store.run(
            Store.call_records_between, day_start(since), day_start(until, 1), tenant
        )
        groups = grouped(records, by, DEFAULT_SERVICE_LEVEL_SECONDS)
        query = {"since": since or "", "until": until or "", "by": by}
        response: Response = page(
            request, "analytics.html", who, total=figures(records, DEFAULT_SERVICE_LEVEL_SECONDS),
            groups=groups, most=max((f.offered for f in groups.values()), default=0),
            groupings=get_args(Grouping), query=query,
        )  # fmt: skip
        return response
