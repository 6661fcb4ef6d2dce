"""The web administration's routes on the API's app: the static files, sign-in at `/`,
sign-out, and the pages of a tenant under `/admin/{tenant}/`.

Sign-in has no session yet, so its form carries a double-submit CSRF token: a random
value in a SameSite=Strict cookie and in the form, which must match. Cookies are
HttpOnly and SameSite=Strict, and Secure when the page came over TLS.
"""

from __future__ import annotations

import hmac
import secrets
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import FastAPI, Form, Request, Response
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles

from ipbx.api.app import create_app
from ipbx.web.accounts import (
    LOCK_SECONDS,
    MAX_FAILURES,
    address_limit,
    close_session,
    open_session,
    session,
    sign_in,
)
from ipbx.web.analytics import add_analytics_page
from ipbx.web.calls import add_call_pages
from ipbx.web.dashboard import add_dashboard
from ipbx.web.extensions import add_extension_pages
from ipbx.web.items import add_item_pages
from ipbx.web.phone import add_phone_page
from ipbx.web.prompts import add_prompt_upload
from ipbx.web.tokens import add_token_pages
from ipbx.web.visitor import CSRF_FIELD, SESSION_COOKIE, page, posted
from ipbx.web.voicemail import add_voicemail_page
from ipbx.web.wallboard import add_wallboard

if TYPE_CHECKING:
    from ipbx.api.services import PbxServices
    from ipbx.api.webhooks import Webhooks

SIGN_IN_COOKIE = "ipbx_sign_in"


def create_site(pbx: PbxServices, webhooks: Webhooks) -> FastAPI:
    """The REST API (api/app.py) with the web administration's pages beside it: what
    the API listener serves."""
    app = create_app(pbx, webhooks)
    add_web_routes(app, pbx)
    return app


def add_web_routes(app: FastAPI, pbx: PbxServices) -> None:
    app.mount("/static", StaticFiles(directory=Path(__file__).parent / "static"), name="static")
    addresses = address_limit()

    def sign_in_page(request: Request, error: str = "", status: int = 200) -> Response:
        token = secrets.token_urlsafe(24)
        response: Response = page(request, "sign_in.html", None, status, error=error, csrf=token)
        _set_cookie(request, response, SIGN_IN_COOKIE, token, max_age=3600)
        return response

    @app.get("/", include_in_schema=False)
    async def home(request: Request) -> Response:
        """The sign-in form, or the dashboard for a signed-in user."""
        session_id = request.cookies.get(SESSION_COOKIE)
        record = await pbx.store.run(session, session_id) if session_id else None
        if record is not None:
            return RedirectResponse(f"/admin/{record.user.tenant}/", 303)
        return sign_in_page(request)

    @app.post("/", include_in_schema=False)
    async def sign_in_form(
        request: Request,
        name: Annotated[str, Form(max_length=64)],
        password: Annotated[str, Form(max_length=1024)],
        csrf: Annotated[str, Form(alias=CSRF_FIELD, max_length=64)] = "",
    ) -> Response:
        cookie = request.cookies.get(SIGN_IN_COOKIE, "")
        if not (cookie and hmac.compare_digest(cookie, csrf)):
            return sign_in_page(request, "The form was stale: please sign in again.", 403)
        address = request.client.host if request.client else ""
        minutes = LOCK_SECONDS // 60
        if not addresses.admits(address, time.monotonic()):
            message = f"Too many wrong passwords from your address: try again in {minutes} minutes."
            return sign_in_page(request, message, 429)
        outcome = await pbx.store.run(sign_in, name, password, address)
        if outcome.user is None:
            addresses.failed(address, time.monotonic())
        if outcome.locked:
            return sign_in_page(
                request,
                f"Locked after {MAX_FAILURES} wrong passwords: try again in {minutes} minutes.",
                429,
            )
        if outcome.user is None:
            return sign_in_page(request, "Wrong name or password.", 401)
        session_id = await pbx.store.run(open_session, outcome.user)
        response = RedirectResponse(f"/admin/{outcome.user.tenant}/", 303)
        _set_cookie(request, response, SESSION_COOKIE, session_id)
        response.delete_cookie(SIGN_IN_COOKIE)
        return response

    @app.post("/admin/{tenant}/sign-out", include_in_schema=False)
    async def sign_out(request: Request, tenant: str) -> Response:
        await posted(pbx, request, tenant)
        await pbx.store.run(close_session, request.cookies.get(SESSION_COOKIE, ""))
        response = RedirectResponse("/", 303)
        response.delete_cookie(SESSION_COOKIE)
        return response

    add_dashboard(app, pbx)
    add_call_pages(app, pbx)
    add_analytics_page(app, pbx)
    add_extension_pages(app, pbx)
    add_item_pages(app, pbx)
    add_token_pages(app, pbx)
    add_wallboard(app, pbx)
    add_voicemail_page(app, pbx)
    add_prompt_upload(app, pbx)
    add_phone_page(app, pbx)


def _set_cookie(
    request: Request, response: Any, name: str, value: str, max_age: int | None = None
) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
