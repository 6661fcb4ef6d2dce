"""Call queues through the API: the live picture of each queue (GET /queues, GET
/queues/{name}), the agents' states (PUT /queues/{name}/agents/{extension}) and the
queue log in Asterisk's queue_log format (GET /queues/log), which wallboards and call
centre reporting tools read.

An agent's state is shared by all its queues (docs/queues.md): logging in or pausing
through one queue's path does it in every queue of the agent, as the feature codes
*45, *46 and *47 do. The log is read from the store (a plain `def` route); the live
picture belongs to the event loop (`async` routes).
"""

# No `from __future__ import annotations`: FastAPI reads the endpoints' annotations at
# run time, and the token dependencies are names local to add_queue_routes.
from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Path, Query
from fastapi.responses import Response
from pydantic import BaseModel, Field

from ipbx.api import models
from ipbx.api.models import AUTH_ERRORS
from ipbx.api.paging import Limit, Offset, Since, Until, not_found, page
from ipbx.api.services import AgentAction, PbxServices, QueueDesk
from ipbx.pbx.queue.log import queue_log_line
from ipbx.pbx.queue.model import AgentStatus, QueueStatus
from ipbx.store import ApiTokenRecord

QueueName = Annotated[str, Path(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
ExtensionNumber = Annotated[str, Path(pattern=r"^[0-9]{1,32}$")]


class AgentChange(BaseModel):
    action: AgentAction = Field(description="login and logout: in all the agent's queues")
    reason: str | None = Field(default=None, max_length=64, description="why paused")


def add_queue_routes(
    app: FastAPI,
    pbx: PbxServices,
    needs_read: Callable[..., ApiTokenRecord],
    needs_admin: Callable[..., ApiTokenRecord],
    sees_configuration: Callable[[ApiTokenRecord], bool],
) -> None:
    """`sees_configuration(token)`: whether the token's tenant owns the configuration
    file's queues (app.py's system_state); another tenant sees no queue."""
    Reader = Annotated[ApiTokenRecord, Depends(needs_read)]
    Admin = Annotated[ApiTokenRecord, Depends(needs_admin)]
    store = pbx.store.blocking  # for the plain `def` route only

    def desk(token: ApiTokenRecord) -> QueueDesk | None:
        return pbx.queues if sees_configuration(token) else None

    def found(token: ApiTokenRecord, name: str) -> tuple[QueueDesk, QueueStatus]:
        queues = desk(token)
        try:
            if queues is not None:
                return queues, queues.status(name)
        except LookupError:
            pass
        raise HTTPException(404, f"name: no queue {name}")

    @app.get(
        "/queues/log",
        response_class=Response,
        responses={
            200: {"content": {"text/plain": {"schema": {"type": "string"}}},
                  "description": "one event a line: epoch|callid|queue|agent|EVENT|data..."},
            **AUTH_ERRORS,
        },
        tags=["queues"],
    )  # fmt: skip
    def export_queue_log(
        token: Reader,
        since: Since = None,
        until: Until = None,
        queue: Annotated[str | None, Query(max_length=64, description="this queue only")] = None,
    ) -> Response:
        """The queues' events in [from, to), oldest first, in Asterisk's queue_log format."""
        records = store.queue_log_between(since, until, queue, token.tenant)
        text = "".join(queue_log_line(record) + "\n" for record in records)
        return Response(text, media_type="text/plain; charset=utf-8")

    @app.get(
        "/queues",
        response_model=models.Page[QueueStatus],
        responses=AUTH_ERRORS,
        tags=["queues"],
    )
    async def list_queues(
        token: Reader, limit: Limit = 50, offset: Offset = 0
    ) -> models.Page[QueueStatus]:
        """Every queue's live picture, by name: its waiting callers (position, wait so
        far, caller ID), its agents (state, since when, calls taken today) and today's
        service level."""
        queues = desk(token)
        names = sorted(queues.queues) if queues is not None else []
        return page([found(token, name)[1] for name in names], limit, offset)

    @app.get(
        "/queues/{name}",
        response_model=QueueStatus,
        responses={**AUTH_ERRORS, **not_found("no such queue")},
        tags=["queues"],
    )
    async def get_queue(token: Reader, name: QueueName) -> QueueStatus:
        """One queue's live picture."""
        return found(token, name)[1]

    @app.put(
        "/queues/{name}/agents/{extension}",
        response_model=AgentStatus,
        responses={**AUTH_ERRORS, **not_found("`detail` names the queue or agent not found")},
        tags=["queues"],
    )
    async def set_agent(
        token: Admin, name: QueueName, extension: ExtensionNumber, change: AgentChange
    ) -> AgentStatus:
        """Log the agent in or out, pause it (with a reason) or unpause it; its state
        is shared by all its queues. Answers the agent's state after the change."""
        queues, status = found(token, name)
        if not any(agent.extension == extension for agent in status.agents):
            raise HTTPException(404, f"extension: {extension} is no agent of queue {name}")
        return queues.set_agent(extension, change.action, change.reason)
