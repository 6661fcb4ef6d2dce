"""The integration figures of `make bench` (issue 6): what the API, the event feed and
webhooks cost ipbx, and how fast they are. bench/run.py's `api` part drives a running
`ipbx serve` with these pieces:

  LoadLoop         an asyncio loop in a thread pinned to the load generator's core, where
                   the webhook receiver, the event feed client and the REST load run (so
                   they take nothing from the server's core);
  WebhookReceiver  a small HTTP/1.1 server (h11, the model of STYLE.md) that answers every
                   request 204 at once and keeps each body with its arrival time;
  EventFeed        a WebSocket client of GET /events that keeps each message the same way;
  summarise        latency from an event's own `time` (set when ipbx published it) to its
                   arrival, events per second, and what is missing against what the calls
                   made must have published;
  rest_load        a bounded number of GETs on a few keep-alive connections (httpx), with
                   the latency of each;
  seed_call_records  call detail records written through ipbx.store before the server
                   starts, so GET /calls pages through a store of realistic size.

Arrival times are wall-clock (time.time()), as the events' `time` is: both ends run on
this machine, so they read the same clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import h11
import httpx
from websockets.asyncio.client import ClientConnection, connect

LOOPBACK = "127.0.0.1"
# The events of one answered call, in the order ipbx publishes them (ipbx/pbx/events.py).
CALL_EVENTS = ("call.started", "call.ringing", "call.answered", "call.ended")

T = TypeVar("T")


class LoadLoop:
    """An event loop running in its own thread, pinned (Linux affinity of that thread
    only) to `cpu`; coroutines are handed to it with `run` and awaited from the caller's
    thread with a time limit."""

    def __init__(self, cpu: int | None) -> None:
        self._cpu = cpu
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._main, name="bench-load-loop", daemon=True)
        self._thread.start()

    def _main(self) -> None:
        if self._cpu is not None:
            os.sched_setaffinity(0, {self._cpu})
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def run(self, coro: Coroutine[object, object, T], timeout: float) -> T:
        """Run `coro` on the loop and wait for its result (at most `timeout` seconds)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        """Cancel what still runs on the loop (a receiver's connection, a feed reader
        left by a failed step), then stop the loop and its thread."""
        with contextlib.suppress(TimeoutError, RuntimeError):
            self.run(_cancel_others(), 5.0)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5.0)
        if not self._thread.is_alive():
            self.loop.close()


async def _cancel_others() -> None:
    tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


@dataclass(frozen=True, slots=True)
class Arrival:
    """One message as it reached the bench: wall-clock time, and the body as sent."""

    at: float
    body: bytes


class WebhookReceiver:
    """Answers every request with 204 No Content, keeps the connection alive (ipbx's
    webhook client reuses it) and records (arrival time, body) of each. Start and stop
    it on its LoadLoop."""

    def __init__(self) -> None:
        self.arrivals: list[Arrival] = []
        self.requests = 0
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}/ipbx-events"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, LOOPBACK, 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            # ipbx keeps its connection open; close it, or wait_closed (3.12+) waits.
            for writer in list(self._writers):
                writer.close()
            await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connection = h11.Connection(h11.SERVER)
        body = bytearray()
        self._writers.add(writer)
        try:
            while True:
                event = connection.next_event()
                if event is h11.NEED_DATA:
                    connection.receive_data(await reader.read(65536))
                elif isinstance(event, h11.Request):
                    body.clear()
                elif isinstance(event, h11.Data):
                    body += event.data
                elif isinstance(event, h11.EndOfMessage):
                    # Stamped before the answer: what a receiver's own clock would say.
                    self.arrivals.append(Arrival(time.time(), bytes(body)))
                    self.requests += 1
                    writer.write(connection.send(h11.Response(status_code=204, headers=[])))
                    writer.write(connection.send(h11.EndOfMessage()))
                    await writer.drain()
                    if connection.our_state is not h11.DONE:
                        break
                    connection.start_next_cycle()
                else:  # ConnectionClosed, or PAUSED after an upgrade we never grant
                    break
        except (h11.ProtocolError, ConnectionError):
            pass
        except asyncio.CancelledError:
            # The loop is closing under an open connection: end quietly (Python 3.11's
            # start_server logs a handler task that ends cancelled).
            pass
        finally:
            self._writers.discard(writer)
            writer.close()


class EventFeed:
    """A client of the WebSocket event feed (GET /events?token=...) that records every
    message it receives. Open and close it on its LoadLoop."""

    def __init__(self) -> None:
        self.arrivals: list[Arrival] = []
        self.close_code: int | None = None
        self._connection: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None

    async def open(self, url: str) -> None:
        # Messages are small; no limit on the queue, so a slow moment of ours is
        # ipbx's backlog (FEED_BACKLOG), not a close from the client library.
        self._connection = await connect(url, max_queue=None, open_timeout=10)
        self._reader = asyncio.create_task(self._read(self._connection))

    async def _read(self, connection: ClientConnection) -> None:
        async for message in connection:
            data = message.encode() if isinstance(message, str) else message
            self.arrivals.append(Arrival(time.time(), data))
        self.close_code = connection.close_code

    async def close(self) -> None:
        if self._connection is not None:
            await self._connection.close()
        if self._reader is not None:
            await asyncio.wait([self._reader], timeout=5)
            self._reader.cancel()


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank percentile (q in 0..100) of `values`; NaN for none."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


@dataclass(frozen=True)
class EventSummary:
    """What a subscriber received against what `calls` answered calls must publish."""

    received: int
    by_type: dict[str, int]
    duplicates: int
    malformed: int
    latencies_ms: list[float]
    first_at: float
    last_at: float
    calls: int
    expected_types: tuple[str, ...]

    @property
    def expected(self) -> int:
        return self.calls * len(self.expected_types)

    @property
    def missing_by_type(self) -> dict[str, int]:
        return {
            kind: self.calls - self.by_type.get(kind, 0)
            for kind in self.expected_types
            if self.by_type.get(kind, 0) < self.calls
        }

    @property
    def missing(self) -> int:
        return sum(self.missing_by_type.values())

    @property
    def other(self) -> int:
        """Events of types the calls do not explain (registration.changed ...)."""
        return sum(n for kind, n in self.by_type.items() if kind not in self.expected_types)

    @property
    def events_per_s(self) -> float:
        """Distinct events over the time from the first arrival to the last."""
        span = self.last_at - self.first_at
        distinct = self.received - self.duplicates - self.malformed
        return distinct / span if span > 0 else math.nan

    def latency_ms(self, q: float) -> float:
        return percentile(self.latencies_ms, q)


def summarise(
    arrivals: Sequence[Arrival], calls: int, expected_types: Sequence[str] = CALL_EVENTS
) -> EventSummary:
    """Count the events in `arrivals` by type (each id once) and take the latency of each
    from its `time` field to its arrival."""
    seen: set[str] = set()
    by_type: Counter[str] = Counter()
    latencies: list[float] = []
    duplicates = malformed = 0
    for arrival in arrivals:
        try:
            event = json.loads(arrival.body)
            event_id, kind, published = str(event["id"]), str(event["type"]), float(event["time"])
        except (ValueError, TypeError, KeyError):
            malformed += 1
            continue
        if event_id in seen:
            duplicates += 1
            continue
        seen.add(event_id)
        by_type[kind] += 1
        latencies.append(1000.0 * (arrival.at - published))
    times = [arrival.at for arrival in arrivals]
    return EventSummary(
        received=len(arrivals),
        by_type=dict(by_type),
        duplicates=duplicates,
        malformed=malformed,
        latencies_ms=latencies,
        first_at=min(times, default=0.0),
        last_at=max(times, default=0.0),
        calls=calls,
        expected_types=tuple(expected_types),
    )


def arrived(arrivals: Sequence[Arrival], calls: int, last_type: str = "call.ended") -> bool:
    """Cheap check while waiting: have `calls` distinct events of `last_type` arrived
    yet? (A retried delivery repeats its body to the byte.)"""
    needle = f'"type":"{last_type}"'.encode()
    return len({arrival.body for arrival in arrivals if needle in arrival.body}) >= calls


@dataclass
class RestResult:
    """A bounded GET load: what was asked, what came back and how long each took."""

    url: str
    connections: int
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    # `total` of each page answered (for /calls/active: the calls in progress).
    totals: list[int] = field(default_factory=list)

    @property
    def requests(self) -> int:
        return len(self.latencies_ms)

    @property
    def ok(self) -> int:
        return self.statuses.get(200, 0)

    @property
    def requests_per_s(self) -> float:
        return self.ok / self.seconds if self.seconds > 0 else math.nan


async def rest_load(
    url: str,
    token: str,
    *,
    connections: int,
    seconds: float,
    max_requests: int,
    totals: bool = False,
) -> RestResult:
    """GET `url` from `connections` workers, one request at a time each, until `seconds`
    have passed or `max_requests` were sent, whichever is first. With `totals`, each
    page's `total` is kept (parsing the body costs the generator's core)."""
    result = RestResult(url=url, connections=connections)
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    headers = {"Authorization": f"Bearer {token}"}
    sent = 0
    async with httpx.AsyncClient(limits=limits, headers=headers, timeout=10.0) as client:
        start = time.perf_counter()
        deadline = start + seconds

        async def worker() -> None:
            nonlocal sent
            while sent < max_requests and time.perf_counter() < deadline:
                sent += 1
                began = time.perf_counter()
                try:
                    response = await client.get(url)
                except httpx.HTTPError as exc:
                    result.errors[type(exc).__name__] += 1
                    result.latencies_ms.append(1000.0 * (time.perf_counter() - began))
                    continue
                result.latencies_ms.append(1000.0 * (time.perf_counter() - began))
                result.statuses[response.status_code] += 1
                if totals and response.status_code == 200:
                    total = response.json().get("total")
                    if isinstance(total, int):
                        result.totals.append(total)

        await asyncio.gather(*(worker() for _ in range(connections)))
        result.seconds = time.perf_counter() - start
    return result


def seed_call_records(
    store_url: str, count: int, *, now: float | None = None, batch: int = 1000, seed: int = 6
) -> None:
    """Write `count` call records of the last 30 days (answered, missed, busy ...; two
    legs with RTP statistics each, as the PBX writes them) to the store at `store_url`,
    through ipbx.store (migrated first). Run it before the server starts."""
    from ipbx.store import CallRecord, LegRecord, Store

    rng = random.Random(seed)
    now = time.time() if now is None else now
    results = ("answered",) * 14 + ("no_answer",) * 3 + ("busy", "busy", "cancelled")
    store = Store(store_url)
    try:
        store.migrate()
        for first in range(0, count, batch):
            records = []
            for _ in range(min(batch, count - first)):
                started = now - rng.uniform(60.0, 30 * 86400.0)
                result = rng.choice(results)
                answered = started + rng.uniform(1.0, 20.0) if result == "answered" else None
                ended = (answered or started) + rng.uniform(5.0, 600.0)
                legs = tuple(
                    LegRecord(
                        role=role,
                        peer=f"{LOOPBACK}:{rng.randrange(10000, 60000)}",
                        codec="PCMU",
                        packets_received=rng.randrange(250, 30000),
                        packets_lost=rng.randrange(0, 30),
                        jitter_ms=round(rng.uniform(0.1, 15.0), 2),
                        mos=round(rng.uniform(3.8, 4.4), 2),
                    )
                    for role in ("caller", "callee")
                )
                callee = str(rng.randrange(1000, 1100))
                records.append(
                    CallRecord(
                        call_id=uuid.UUID(int=rng.getrandbits(128)).hex,
                        caller=str(rng.randrange(1000, 1100)),
                        callee=callee,
                        started=started,
                        ended=ended,
                        result=result,
                        answered=answered,
                        legs=legs if answered is not None else (),
                        path=f"extension:{callee}",
                    )
                )
            store.save_call_records(records)
    finally:
        store.close()
