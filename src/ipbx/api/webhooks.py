"""Webhooks: events POSTed as signed JSON to the URLs of `webhooks:` in the config.

Delivery goes through an outbox table. When an event is published, one row per
subscribed webhook is written (by the store's thread, within FLUSH_DELAY, 20 ms, so a
burst of events is one transaction); a worker per webhook sends the oldest pending row,
and only when it was accepted (any 2xx) the next one, so a receiver sees events in the
order they happened. A failed attempt (connection refused, time-out, non-2xx) is
retried after `retry_initial` seconds, doubling up to `retry_max`, until
`max_attempts`; then the row is marked failed and the next one goes. Pending rows
outlive a restart and are sent when ipbx starts again. Delivered and failed rows are
the delivery log (GET /webhooks/deliveries); those older than
`api.delivery_retention_days` are deleted every hour, so the table stays bounded.
Pending rows are never pruned.

Every attempt carries the same body and these headers:

``X-Ipbx-Event-Id``
    the event's id. A row can be sent twice (accepted, then ipbx stopped before it
    recorded that): a receiver that ignores an id it has already seen gets every event
    exactly once.
``X-Ipbx-Timestamp``
    when this attempt was made, epoch seconds.
``X-Ipbx-Signature``
    ``sha256=`` and the hex HMAC-SHA256, keyed with the webhook's `secret`, of the
    timestamp, ``.`` and the body. The receiver recomputes it and refuses a timestamp
    older than a few minutes, so a captured request cannot be replayed (the scheme of
    Stripe's and Slack's signatures).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from ipbx.pbx.events import Event, EventBus, type_matches
from ipbx.pbx.webhook_config import WebhookConfig
from ipbx.store import AsyncStore, DeliveryRecord, Store

if TYPE_CHECKING:
    import httpx

log = logging.getLogger("ipbx.webhooks")

USER_AGENT = "ipbx-webhooks"
# Pending rows a worker reads at once (then sends and marks one by one).
BATCH = 100
# Events published within this many seconds go to the outbox in one transaction: a
# call's events come in bursts (started and ringing; ended and missed).
FLUSH_DELAY = 0.02
DAY = 86400.0
DEFAULT_RETENTION = 30 * DAY
# How often old delivered and failed rows are pruned: often enough that the table never
# holds much more than the retention, rarely enough that the DELETE costs nothing.
PRUNE_INTERVAL = 3600.0


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The X-Ipbx-Signature value of `body` sent at `timestamp`."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(secret: str, timestamp: str, body: bytes, signature: str) -> bool:
    """What a receiver does (our tests too): compare in constant time."""
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


class Webhooks:
    """The outbox writer (an event bus subscriber) and one delivery worker per webhook."""

    def __init__(
        self,
        store: AsyncStore,
        configs: list[WebhookConfig],
        bus: EventBus,
        clock: Callable[[], float] = time.time,
        retention: float = DEFAULT_RETENTION,
    ) -> None:
        self._store = store
        self.retention = retention
        self._configs = list(configs)
        self._bus = bus
        self._clock = clock
        self._unsubscribe: Callable[[], None] | None = None
        self._unwritten: list[DeliveryRecord] = []
        # The outbox write waiting for FLUSH_DELAY or for the store's thread; one at a
        # time, so rows reach the outbox in the order of their events.
        self._writing: asyncio.Task[None] | None = None
        self._wake: dict[tuple[str, str], asyncio.Event] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._client: httpx.AsyncClient | None = None
        self._started = False
        self.delivered = 0
        self.failed_attempts = 0

    def subscribe(self) -> None:
        """Write outbox rows for events from now on."""
        if self._unsubscribe is None and self._configs:
            self._unsubscribe = self._bus.subscribe(self._on_event)

    def start(self) -> None:
        """Subscribe, and start the workers (which send what an earlier run left) and the
        pruning of old deliveries (also without webhooks: an earlier run may have left
        some)."""
        self.subscribe()
        self._started = True
        if self._tasks:
            return
        self._tasks.append(asyncio.create_task(self._pruner()))
        if not self._configs:
            return
        import httpx  # with the first webhook: a server without any needs no HTTP client

        self._client = httpx.AsyncClient(follow_redirects=False)
        for config in self._configs:
            wake = self._wake.setdefault((config.tenant, config.url), asyncio.Event())
            wake.set()
            self._tasks.append(asyncio.create_task(self._worker(config, wake)))

    async def stop(self) -> None:
        """Stop sending (pending rows stay for the next start); events are still written
        to the outbox until `close`."""
        self._started = False
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def update(self, configs: list[WebhookConfig]) -> None:
        """Take up a changed webhook list (provisioned through the API): the workers
        restart on it; a row cut off mid-attempt is sent again (same event id)."""
        if configs == self._configs:
            return
        running = self._started
        await self.stop()
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        self._configs = list(configs)
        if running:
            self.start()
        else:
            self.subscribe()

    async def close(self) -> None:
        """Write what is still buffered and stop listening to the bus (at shutdown)."""
        if self._writing is not None:
            self._writing.cancel()  # its rows are written now, or are being written
            with contextlib.suppress(asyncio.CancelledError):
                await self._writing
        await self.flush()
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    def _on_event(self, event: Event) -> None:
        body = event.to_json()
        for config in self._configs:
            if config.tenant == event.tenant and type_matches(config.events, event.type):
                self._unwritten.append(
                    DeliveryRecord(
                        event_id=event.id,
                        event_type=event.type,
                        webhook=config.url,
                        tenant=event.tenant,
                        payload=body,
                        created=event.time,
                        next_attempt=event.time,
                    )
                )
        if not self._unwritten or self._writing is not None:
            return
        # Published outside a loop (a tool, a test), rows wait for flush() or close().
        with contextlib.suppress(RuntimeError):
            self._writing = asyncio.get_running_loop().create_task(self._write_soon())

    async def _write_soon(self) -> None:
        try:
            await asyncio.sleep(FLUSH_DELAY)
            written = await self.flush()
        finally:
            self._writing = None
        if written and self._unwritten:  # published while it was being written
            self._writing = asyncio.create_task(self._write_soon())

    async def flush(self) -> bool:
        """Write the buffered rows to the outbox and wake their workers; False when the
        database refused them (they are kept for the next flush)."""
        rows, self._unwritten = self._unwritten, []
        if not rows:
            return True
        try:
            await self._store.run(Store.add_deliveries, rows)
        except Exception:
            log.exception("could not write %d webhook deliveries; kept for later", len(rows))
            self._unwritten = rows + self._unwritten
            return False
        for row in rows:
            wake = self._wake.get((row.tenant, row.webhook))
            if wake is not None:
                wake.set()
        return True

    async def queue_depth(self) -> int:
        """Deliveries not yet accepted: in the outbox, and not yet written to it."""
        return await self._store.run(Store.pending_deliveries) + len(self._unwritten)

    async def prune(self) -> int:
        """Delete the delivered and failed deliveries older than the retention."""
        before = self._clock() - self.retention
        pruned = await self._store.run(Store.prune_deliveries, before)
        if pruned:
            log.info("pruned %d webhook deliveries older than %g days", pruned,
                     self.retention / DAY)  # fmt: skip
        return pruned

    async def _pruner(self) -> None:
        while True:
            try:
                await self.prune()
            except Exception:
                log.exception("could not prune old webhook deliveries; trying again later")
            await asyncio.sleep(PRUNE_INTERVAL)

    async def _worker(self, config: WebhookConfig, wake: asyncio.Event) -> None:
        while True:
            try:
                wake.clear()
                # A batch read once; each row is still marked as it goes. A row left
                # pending (to retry) stops the batch: nothing overtakes it.
                batch = await self._store.run(
                    Store.next_deliveries, config.url, config.tenant, BATCH
                )
                if not batch:
                    await wake.wait()
                    continue
                for delivery in batch:
                    delay = (delivery.next_attempt or 0.0) - self._clock()
                    if delay > 0:
                        await asyncio.sleep(delay)
                        break
                    if await self._attempt(config, delivery) == "pending":
                        break
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("webhook %s: delivery worker failed; retrying", config.url)
                await asyncio.sleep(1.0)

    async def _attempt(self, config: WebhookConfig, delivery: DeliveryRecord) -> str:
        """Send one row; its new status (pending: to be retried)."""
        import httpx

        assert self._client is not None
        body = delivery.payload.encode()
        timestamp = str(int(self._clock()))
        attempts = delivery.attempts + 1
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "X-Ipbx-Event-Id": delivery.event_id,
            "X-Ipbx-Event-Type": delivery.event_type,
            "X-Ipbx-Timestamp": timestamp,
            "X-Ipbx-Signature": sign(config.secret, timestamp, body),
            "X-Ipbx-Attempt": str(attempts),
        }
        try:
            response = await self._client.post(
                config.url, content=body, headers=headers, timeout=config.timeout
            )
            error = "" if 200 <= response.status_code < 300 else f"HTTP {response.status_code}"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}".rstrip(": ")
        now = self._clock()
        if not error:
            self.delivered += 1
            await self._store.run(
                Store.update_delivery,
                delivery.id, status="delivered", attempts=attempts, next_attempt=None,
                delivered_at=now,
            )  # fmt: skip
            return "delivered"
        self.failed_attempts += 1
        if attempts >= config.max_attempts:
            log.warning("webhook %s: gave up on event %s after %d attempts: %s",
                        config.url, delivery.event_id, attempts, error)  # fmt: skip
            await self._store.run(
                Store.update_delivery,
                delivery.id, status="failed", attempts=attempts, next_attempt=None,
                last_error=error,
            )  # fmt: skip
            return "failed"
        delay = min(config.retry_max, config.retry_initial * 2 ** (attempts - 1))
        log.info("webhook %s: event %s attempt %d failed (%s); next in %.0f s",
                 config.url, delivery.event_id, attempts, error, delay)  # fmt: skip
        await self._store.run(
            Store.update_delivery,
            delivery.id, status="pending", attempts=attempts, next_attempt=now + delay,
            last_error=error,
        )  # fmt: skip
        return "pending"
