"""CRM caller lookup: who is calling, asked of the business's CRM over HTTP.

On a call from outside, ipbx asks `crm.url` (with `{number}` replaced by the caller's
number, URL-escaped) and expects JSON `{"name": "..."}`; the name is shown as the caller
ID's display name on the ringing phones and given in the call's events (`caller_name`).
The answer is awaited at most `crm.timeout_seconds` (a slow CRM must not delay the
phones more than that) and kept `crm.cache_seconds`, misses included. Any failure, a
time-out, a non-2xx answer or JSON without a name, counts as "not known" and is logged.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING
from urllib.parse import quote

from pydantic import Field

from ipbx.pbx.schema import Model

if TYPE_CHECKING:
    import httpx

log = logging.getLogger("ipbx.crm")

# A display name goes into a quoted-string (RFC 3261 §25.1): keep it short and plain.
_MAX_NAME = 64


class CrmConfig(Model):
    """Caller lookup in a CRM (pbx/crm.py): `url` with `{number}` in it, answering JSON
    `{"name": ...}`."""

    url: str = Field(pattern=r"^https?://\S+$")
    timeout_seconds: float = Field(default=1.0, gt=0, le=10)
    cache_seconds: float = Field(default=300.0, ge=0)


class CallerLookup:
    def __init__(self, config: CrmConfig) -> None:
        self.config = config
        self._cache: dict[str, tuple[float, str | None]] = {}
        import httpx  # with a CRM: a server without one needs no HTTP client

        self._client: httpx.AsyncClient = httpx.AsyncClient(timeout=config.timeout_seconds)

    async def name(self, number: str) -> str | None:
        now = time.monotonic()
        cached = self._cache.get(number)
        if cached is not None and cached[0] > now:
            return cached[1]
        name = await self._ask(number)
        self._cache[number] = (now + self.config.cache_seconds, name)
        return name

    async def close(self) -> None:
        await self._client.aclose()

    async def _ask(self, number: str) -> str | None:
        import httpx

        url = self.config.url.replace("{number}", quote(number, safe=""))
        try:
            response = await self._client.get(url)
            response.raise_for_status()
            value = response.json().get("name")
        except (httpx.HTTPError, ValueError, AttributeError) as exc:
            log.info("CRM lookup of %s failed: %s", number, exc or type(exc).__name__)
            return None
        if not isinstance(value, str) or not value.strip():
            return None
        return "".join(ch for ch in value.strip() if ch.isprintable() and ch not in '"\\')[
            :_MAX_NAME
        ]
