"""Call control endpoints (docs/api.md, "Call control"): hang up, transfer, record and send
DTMF on a call in progress, named by the `call_id` GET /calls/active shows.

All want the admin scope. 404 names `call_id` when no call of the token's tenant has that
id (calls in progress are the default tenant's); 409 says why the call cannot do it now
(a transfer of a call not answered yet, a park with every slot taken, ...); 422 names
the field of a bad body.
"""

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path
from fastapi.responses import Response

from ipbx.api import models
from ipbx.pbx.control import CallStateError, NoSuchCall
from ipbx.pbx.events import DEFAULT_TENANT
from ipbx.store import ApiTokenRecord

if TYPE_CHECKING:
    from ipbx.pbx.control import CallControl

_RESPONSES: dict[int | str, dict[str, Any]] = {
    **models.AUTH_ERRORS,
    404: {"model": models.Problem, "description": "no such call in progress (`call_id`)"},
    409: {"model": models.Problem, "description": "the call cannot do that now"},
}

CallId = Annotated[str, Path(max_length=64, description="as GET /calls/active shows it")]


# No `from __future__ import annotations`: FastAPI reads the annotations at run time.
def call_control(control: "CallControl", admin: Callable[..., ApiTokenRecord]) -> APIRouter:
    """The endpoints over `control`; `admin` is the dependency that wants an admin token."""
    router = APIRouter(prefix="/calls/active/{call_id}", tags=["calls"], responses=_RESPONSES)
    Admin = Annotated[ApiTokenRecord, Depends(admin)]

    def checked(token: ApiTokenRecord, call_id: str) -> None:
        # Calls in progress are the default tenant's; other tenants see none of them.
        if token.tenant != DEFAULT_TENANT:
            raise HTTPException(404, f"call_id: no call {call_id} in progress")

    def run(token: ApiTokenRecord, call_id: str, operation: Callable[[], Any]) -> Any:
        checked(token, call_id)
        try:
            return operation()
        except NoSuchCall:
            raise HTTPException(404, f"call_id: no call {call_id} in progress") from None
        except CallStateError as exc:
            raise HTTPException(409, str(exc)) from None
        except RuntimeError as exc:  # a recording file that cannot be made
            raise HTTPException(500, str(exc)) from None

    @router.delete("", status_code=204, response_class=Response)
    async def hang_up(token: Admin, call_id: CallId) -> Response:
        """Hang up: BYE to the parties that answered, CANCEL to phones still ringing,
        487 to a caller not answered yet. The call record is written as for any call."""
        run(token, call_id, lambda: control.hang_up(call_id))
        return Response(status_code=204)

    @router.post("/transfer", status_code=202, response_model=models.Accepted)
    async def transfer(order: models.Transfer, token: Admin, call_id: CallId) -> models.Accepted:
        """Blind transfer: `leg`'s party is connected to `target`, an extension whose
        phones ring now or an outside number called through the outbound routes with
        the other party's permission; when it answers, the other party is hung up. If
        nobody answers in 30 s, the two parties stay connected. Follow it by the call's
        call.* events. The park number (700 with `parking:`) parks `leg`'s party in the
        first free slot (call.parked) and the other party hears the slot and is hung up;
        409 when every slot is taken."""
        try:
            run(token, call_id, lambda: control.transfer(call_id, order.leg, order.target))
        except PermissionError as exc:
            raise HTTPException(403, f"target: {exc}") from None
        except LookupError as exc:
            raise HTTPException(404, f"target: {exc}") from None
        return models.Accepted(call_id=call_id)

    @router.post("/recording", response_model=models.Recording)
    async def recording(
        order: models.RecordingControl, token: Admin, call_id: CallId
    ) -> models.Recording:
        """Start or stop recording the call, where `record: always` calls are recorded
        (GET /calls/{call_id}/recording serves it once the call ended). Stopping closes
        the file and publishes recording.ready; a call is recorded once at most."""
        if order.action == "start":
            name = run(token, call_id, lambda: control.start_recording(call_id))
        else:
            name = run(token, call_id, lambda: control.stop_recording(call_id))
        return models.Recording(call_id=call_id, recording=name, active=order.action == "start")

    @router.post("/dtmf", status_code=202, response_model=models.Accepted)
    async def dtmf(order: models.Dtmf, token: Admin, call_id: CallId) -> models.Accepted:
        """Send key presses to `leg`'s phone: RFC 4733 telephone-events when it
        negotiated them, in-band tones otherwise; 100 ms each, 60 ms apart."""
        run(token, call_id, lambda: control.send_dtmf(call_id, order.leg, order.digits))
        return models.Accepted(call_id=call_id)

    return router
