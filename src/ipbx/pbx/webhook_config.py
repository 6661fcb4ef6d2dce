"""A webhook subscription as the configuration file's `webhooks:` and the API write it.

api/webhooks.py delivers the events; the model lives here, below the API, because
provisioning (pbx/provisioning.py) keeps these items as it keeps the others.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, ClassVar, Self
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field
from pydantic_core import PydanticCustomError

from ipbx.pbx.schema import Item, Name


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{value!r}: expected an http:// or https:// URL")
    return value


EventPattern = Annotated[str, Field(pattern=r"^[a-z0-9_.*?]+$")]


class WebhookConfig(Item):
    """A URL that gets the events of one tenant whose types match `events` (``call.*``,
    ``voicemail.new``, ``*``) as signed JSON POSTs, through a persisted outbox.

    A failed delivery is retried after `retry_initial` seconds, doubling up to
    `retry_max`, `max_attempts` times in all; later events to the same URL wait for it,
    so the receiver sees them in the order they happened."""

    key_field: ClassVar[str] = "url"
    any_tenant: ClassVar[bool] = True

    url: Annotated[str, AfterValidator(_http_url)]
    events: list[EventPattern] = Field(min_length=1)
    # The HMAC-SHA256 key of the X-Ipbx-Signature header, shared with the receiver.
    secret: str = Field(min_length=16, repr=False)
    tenant: Name = "default"
    timeout: float = Field(default=10.0, gt=0, le=300)
    retry_initial: float = Field(default=1.0, gt=0)
    retry_max: float = Field(default=300.0, gt=0)
    max_attempts: int = Field(default=30, ge=1)

    @classmethod
    def check_list(cls, items: Sequence[Self], field: str) -> None:
        """The outbox keys deliveries by URL: one subscription per URL and tenant."""
        seen: set[tuple[str, str]] = set()
        for index, webhook in enumerate(items):
            if (webhook.tenant, webhook.url) in seen:
                raise PydanticCustomError(
                    "duplicate_webhook",
                    "{url} is already subscribed for tenant {tenant}",
                    {"url": webhook.url, "tenant": webhook.tenant, "at": (index, "url")},
                )
            seen.add((webhook.tenant, webhook.url))
