"""What every list endpoint shares: ``?limit=&offset=`` and the ``{total, limit, offset,
items}`` answer, the ``?from=&to=`` span of time of the call and queue records, and the
404 an endpoint documents (the 401/403 every authenticated endpoint documents are
models.AUTH_ERRORS)."""

from collections.abc import Sequence
from typing import Annotated, Any, TypeVar

from fastapi import Query

from ipbx.api import models

T = TypeVar("T")

# Bounds keep every query within what both databases and JSON carry.
MAX_LIMIT = 1000
MAX_OFFSET = 1_000_000_000
MAX_TIME = 1e11  # epoch seconds, year 5138

Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="items per page")]
Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET, description="items to skip")]
Since = Annotated[
    float | None,
    Query(alias="from", ge=0, le=MAX_TIME, allow_inf_nan=False,
          description="started at or after (epoch seconds)"),
]  # fmt: skip
Until = Annotated[
    float | None,
    Query(alias="to", ge=0, le=MAX_TIME, allow_inf_nan=False,
          description="started before (epoch seconds)"),
]  # fmt: skip


def not_found(description: str) -> dict[int | str, dict[str, Any]]:
    """The 404 of an endpoint whose `detail` starts with the field it could not find."""
    return {404: {"model": models.Problem, "description": description}}


def page(items: Sequence[T], limit: int, offset: int) -> models.Page[T]:
    return models.Page[T](
        total=len(items), limit=limit, offset=offset, items=list(items[offset : offset + limit])
    )
