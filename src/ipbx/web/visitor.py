"""Who is looking at a page: the signed-in session behind the cookie, checked against
the tenant in the page's path, and for a change, the role and the form's CSRF token.

Not signed in: a redirect to the sign-in page. Another tenant's page: 403. A change by a
supervisor, or a form without its session's CSRF token: 403, and nothing changes.
"""

from __future__ import annotations

import hmac
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import HTTPException, Request
from fastapi.templating import Jinja2Templates

from ipbx.pbx.provisioning import KINDS
from ipbx.store import AdminSessionRecord
from ipbx.web.accounts import session

if TYPE_CHECKING:
    from ipbx.api.services import PbxServices

SESSION_COOKIE = "ipbx_session"
CSRF_FIELD = "csrf"
templates = Jinja2Templates(directory=Path(__file__).parent / "templates")
# A configuration list's name as a heading: its key in the file, in words.
TITLES = {"ivrs": "IVR menus", "blacklist": "Blacklist"}
templates.env.filters["list_title"] = lambda name: TITLES.get(
    name, name.replace("_", " ").capitalize()
)
templates.env.filters["localtime"] = lambda epoch: time.strftime(
    "%Y-%m-%d %H:%M:%S", time.localtime(epoch)
)


@dataclass(frozen=True)
class Visitor:
    """A signed-in user on a page of its tenant."""

    session: AdminSessionRecord
    tenant: str

    @property
    def name(self) -> str:
        return self.session.user.name

    @property
    def may_change(self) -> bool:
        return self.session.user.role == "admin"

    @property
    def csrf(self) -> str:
        return self.session.csrf


async def visitor(pbx: PbxServices, request: Request, tenant: str) -> Visitor:
    """The session's user on a page of `tenant`: a redirect to sign in without a live
    session, 403 for another tenant's page."""
    session_id = request.cookies.get(SESSION_COOKIE)
    record = await pbx.store.run(session, session_id) if session_id else None
    if record is None:
        raise HTTPException(303, "sign in first", {"Location": "/"})
    if record.user.tenant != tenant:
        raise HTTPException(403, f"tenant: {record.user.name} manages tenant {record.user.tenant}")
    return Visitor(record, tenant)


async def posted(pbx: PbxServices, request: Request, tenant: str) -> tuple[Visitor, dict[str, str]]:
    """A form sent by the session's user: its fields once its CSRF token is checked
    (403 otherwise)."""
    who = await visitor(pbx, request, tenant)
    form = {key: value for key, value in (await request.form()).items() if isinstance(value, str)}
    if not _same(who.csrf, form.pop(CSRF_FIELD, None)):
        raise HTTPException(403, "csrf: the form's token is missing or stale; reload the page")
    return who, form


async def editor(pbx: PbxServices, request: Request, tenant: str) -> tuple[Visitor, dict[str, str]]:
    """A change by the session's user: its form's fields once the CSRF token and the
    role are checked (403 otherwise)."""
    who, form = await posted(pbx, request, tenant)
    if not who.may_change:
        raise HTTPException(403, f"role: {who.name} is a supervisor and may not change anything")
    return who, form


def _same(expected: str, given: str | None) -> bool:
    return given is not None and hmac.compare_digest(expected, given)


def page(
    request: Request, template: str, who: Visitor | None, status: int = 200, **context: Any
) -> Any:
    """A page, with who is signed in and its CSRF token for the forms."""
    return templates.TemplateResponse(
        request,
        template,
        {"who": who, "csrf_field": CSRF_FIELD, "kinds": list(KINDS.values()), **context},
        status_code=status,
    )
