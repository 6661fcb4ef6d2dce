"""Media workers: processes that carry bridged calls' RTP, so that the media plane grows
with the machine's cores and a loaded media plane does not slow SIP (DESIGN.md: "the
media engine sits behind its interface so it can move into worker processes").

What moves. The server binds every endpoint and keeps its sockets, and bridges two
endpoints itself at first (bridge.connect). When the bridge has stood for `MOVE_AFTER`
seconds (a transcoded one: at once, see offload) and both legs are plain RTP with
nothing else to do here (no SRTP, WebRTC, recording, tap, or keys being sent), the
server stops reading their sockets and hands them over (SCM_RIGHTS), with each leg's
state (media/handover.py), to the worker carrying the fewest bridges: a short relayed
call (or one a phone rings for a moment) never pays the move. The worker relays or
transcodes the pair with the same code as the server (bridge.join), so both legs of a
bridge are always in one worker. Anything else done to either endpoint (hold, transfer,
recording, a re-INVITE, hang-up) first brings the pair home (MediaEndpoint.away): a
request the worker answers, once it has stopped reading, with the state its legs got
to; the server joins them here and goes on.

While a pair is away the worker sends at once each key a phone presses (on_dtmf), and
each leg's meter reading when asked (`refresh`: the media time-out asks at each sweep,
/metrics at each scrape): the readings come with its answer, so a sweep reads what the
worker counted at the one before. Readings sent on a clock instead cost the server time
for every call whether anyone reads them or not (1 % of its core for 500 calls twice a
second, measured).

A worker that dies, or does not answer within two seconds, is killed and replaced: its
pairs come home as they left and `on_lost` is told their endpoints, so that the PBX ends
their calls (the calls' records say why).

The control channel is a SOCK_SEQPACKET socket pair, one pickled message a datagram
(between two processes of one installation, never over a network). No RTP crosses it.
The server never waits to hand a bridge over (what the socket cannot take yet waits in
order, sent when it can); only a recall waits, for its answer.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import pickle
import socket
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from ipbx.media.bridge import join, transcode
from ipbx.media.endpoint import MediaEndpoint
from ipbx.media.handover import LegState, leg_state, resume

log = logging.getLogger(__name__)

REPLY_TIMEOUT = 2.0
# The largest control message: a batch of meter readings.
MESSAGE_LIMIT = 1 << 18
# Seconds a bridge stands in the server before a worker takes it over.
MOVE_AFTER = 1.0
# Seconds before a worker that died is started again, doubled after each failure to start.
RESTART_DELAY = 1.0
MAX_RESTART_DELAY = 60.0


def worker_count(setting: int | str) -> int:
    """`media.workers`: a count, or `auto`: the cores this process may run on, less the
    one SIP needs (so none on one core)."""
    if setting == "auto":
        return max(0, len(os.sched_getaffinity(0)) - 1)
    return int(setting)


class WorkerLost(RuntimeError):
    """The worker died or stopped answering."""


class MediaWorkers:
    """The worker processes of one server: `await start()`, then `offload` is the port
    pool's hook (bridge.connect); `close()` at shutdown."""

    def __init__(self, count: int, address: str) -> None:
        self.count = count
        self.address = address
        self.workers: list[Worker] = []
        # Told the endpoints whose worker was lost (their calls should end).
        self.on_lost: Callable[[list[MediaEndpoint]], None] | None = None
        self._closing = False
        self._restarts: set[asyncio.Task[None]] = set()
        self._delay = RESTART_DELAY
        self.move_after = MOVE_AFTER

    async def start(self) -> None:
        await asyncio.gather(*(self._spawn() for _ in range(self.count)))

    async def _spawn(self) -> None:
        worker = Worker(self.address, self._lost)
        self.workers.append(worker)
        try:
            await asyncio.wait_for(worker.ready, 30)
        except (TimeoutError, WorkerLost):
            log.error("media worker %d did not start", worker.pid)
            worker.fail()
        else:
            self._delay = RESTART_DELAY

    def offload(self, a: MediaEndpoint, b: MediaEndpoint) -> None:
        """`a` and `b` are bridged here: a worker takes a relayed bridge over in
        `move_after` seconds, a transcoded one at once, if it still stands then and both
        legs can go. A second of transcoding costs more than the move, and a transcoder
        moved once its media flows starts each stream again, as a new talkspurt."""
        loop = asyncio.get_running_loop()
        if a._bridged_by is transcode:
            loop.call_soon(self.move, a, b)
        else:
            loop.call_later(self.move_after, self.move, a, b)

    def move(self, a: MediaEndpoint, b: MediaEndpoint) -> None:
        """Hand the bridge of `a` and `b` to the least busy worker now, if it can go."""
        ready = self._ready()
        if ready and movable_pair(a, b):
            min(ready, key=lambda w: len(w.pairs)).take(a, b)

    def refresh(self) -> None:
        """Ask every worker for its legs' meter readings (they come with its answer)."""
        for worker in self._ready():
            worker.count()

    def _ready(self) -> list[Worker]:
        return [w for w in self.workers if w.ready.done() and not w.ready.exception()]

    def close(self) -> None:
        self._closing = True
        for task in self._restarts:
            task.cancel()
        for worker in list(self.workers):
            worker.close()
        self.workers.clear()

    def _lost(self, worker: Worker, endpoints: list[MediaEndpoint]) -> None:
        if worker in self.workers:
            self.workers.remove(worker)
        loop = asyncio.get_running_loop()
        if endpoints and self.on_lost is not None:
            # Not from inside whatever found the loss (an endpoint closing, say).
            loop.call_soon(self.on_lost, endpoints)
        if not self._closing:
            task = loop.create_task(self._restart())
            self._restarts.add(task)
            task.add_done_callback(self._restarts.discard)

    async def _restart(self) -> None:
        await asyncio.sleep(self._delay)
        # A worker that cannot start (a broken installation) is tried less and less often.
        self._delay = min(MAX_RESTART_DELAY, 2 * self._delay)
        if not self._closing:
            await self._spawn()


def movable_pair(a: MediaEndpoint, b: MediaEndpoint) -> bool:
    """Whether `a` and `b` are still bridged to each other here, and another process
    (or the kernel) can carry them: plain RTP, a codec, nothing but the bridge."""
    return (
        a._partner is b and b._partner is a and a._pool is b._pool and _movable(a) and _movable(b)
    )


def _movable(endpoint: MediaEndpoint) -> bool:
    return (
        endpoint.away is None
        and not endpoint.closed
        and endpoint.codec is not None
        and endpoint._srtp is None
        and endpoint.webrtc is None
        and endpoint._tap is None
        and endpoint._recorder is None
        and not endpoint._keys.locked()
    )


class Worker:
    """One worker process, seen from the server."""

    def __init__(self, address: str, lost: Callable[[Worker, list[MediaEndpoint]], None]) -> None:
        self._lost = lost
        self._sock, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "ipbx.media.worker", str(child.fileno()), address],
            pass_fds=[child.fileno()],
        )
        child.close()
        # The event loop's reads and sends never wait: a socket with a time-out waits
        # even when MSG_DONTWAIT is asked for (CPython polls before it tries), and a
        # wake-up whose message a recall has already read would hold the loop for the
        # whole time-out and then give the worker up. Only `recall` waits.
        self._sock.setblocking(False)
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self._sock.fileno(), self._readable)
        self.ready: asyncio.Future[None] = self._loop.create_future()
        self.pairs: dict[int, Pair] = {}
        self._ids = itertools.count()
        self._replies: dict[int, list[LegState] | None] = {}
        # Messages (with the descriptors they pass) the socket could not take yet.
        self._outbox: deque[tuple[bytes, list[int]]] = deque()
        self._writing = False
        self.dead = False

    @property
    def pid(self) -> int:
        return self._proc.pid

    def take(self, a: MediaEndpoint, b: MediaEndpoint) -> None:
        """Hand the two endpoints' bridge to this worker."""
        for endpoint in (a, b):
            endpoint.detach()
            endpoint._reports.stop()  # the worker reports, when it is the source
        # The sockets stay open here: whatever closes them recalls the pair first, and a
        # recall sends what waits before it.
        sockets = [c.hand_over() for e in (a, b) for c in (e._rtp, e._rtcp)]
        pair = Pair(self, next(self._ids), a, b)
        self.pairs[pair.id] = pair
        a.away = b.away = pair
        message = pickle.dumps(("bridge", pair.id, [leg_state(a), leg_state(b)]))
        self._outbox.append((message, [s.fileno() for s in sockets]))
        self._send_waiting()

    def count(self) -> None:
        """Ask for the meter readings of the pairs this worker carries."""
        if self.pairs and not self.dead:
            self._outbox.append((pickle.dumps(("count",)), []))
            self._send_waiting()

    def _send_waiting(self) -> None:
        """Send what waits, as far as the socket takes it now; the rest when it can."""
        while self._outbox:
            message, fds = self._outbox[0]
            try:
                socket.send_fds(self._sock, [message], fds)
            except BlockingIOError:
                if not self._writing:
                    self._loop.add_writer(self._sock.fileno(), self._send_waiting)
                    self._writing = True
                return
            except OSError as exc:
                log.error("media worker %d lost: %s", self.pid, exc)
                self.fail()
                return
            self._outbox.popleft()
        if self._writing:
            self._loop.remove_writer(self._sock.fileno())
            self._writing = False

    def recall(self, pair: Pair) -> list[LegState] | None:
        """The pair's legs back from the worker (WorkerLost if it cannot answer; None if
        it could not set their bridge up)."""
        if self.dead:
            raise WorkerLost("it has gone")
        del self.pairs[pair.id]
        try:
            # Sends and the reply awaited wait this long at most: then the worker is lost.
            self._sock.settimeout(REPLY_TIMEOUT)
            while self._outbox:  # in order, waiting as long as a reply may
                message, fds = self._outbox.popleft()
                socket.send_fds(self._sock, [message], fds)
            self._send_waiting()  # nothing waits now: stop watching for room
            self._sock.send(pickle.dumps(("home", pair.id)))
            # The worker's meter readings may come meanwhile: the wait is bounded as a
            # whole, not message by message.
            deadline = time.monotonic() + REPLY_TIMEOUT
            while pair.id not in self._replies:
                self._sock.settimeout(max(0.001, deadline - time.monotonic()))
                self._receive()
        except (OSError, WorkerLost) as exc:
            log.error("media worker %d lost: %s", self.pid, exc)
            self.pairs[pair.id] = pair
            self.fail()
            raise WorkerLost from exc
        finally:
            if not self.dead:
                self._sock.setblocking(False)
        return self._replies.pop(pair.id)

    def fail(self) -> None:
        """The worker is gone or useless: kill it and take its pairs back as they left."""
        if self.dead:
            return
        self.dead = True
        self._stop()
        if not self.ready.done():
            self.ready.set_exception(WorkerLost("it failed before it was ready"))
            self.ready.exception()  # retrieved: nobody may be waiting any more
        endpoints = []
        for pair in self.pairs.values():
            for endpoint in (pair.a, pair.b):
                endpoint.away = None
                _take_back(endpoint)
                endpoints.append(endpoint)
        self.pairs.clear()
        self._lost(self, endpoints)

    def close(self) -> None:
        """Stop the worker (at shutdown, when no pair is away)."""
        if not self.dead:
            self.dead = True
            self._stop()

    def _stop(self) -> None:
        self._loop.remove_reader(self._sock.fileno())
        self._loop.remove_writer(self._sock.fileno())
        self._outbox.clear()
        self._sock.close()
        self._proc.kill()
        self._proc.wait()

    def _readable(self) -> None:
        try:
            # A reply awaited in `recall` may have taken the message the loop woke for.
            self._receive()
        except BlockingIOError:
            return
        except (OSError, WorkerLost) as exc:
            log.error("media worker %d lost: %s", self.pid, exc)
            self.fail()

    def _receive(self) -> None:
        data = self._sock.recv(MESSAGE_LIMIT)
        if not data:
            raise WorkerLost("it has exited")
        message: tuple[Any, ...] = pickle.loads(data)
        kind = message[0]
        if kind == "counts":
            for pair_id, a_reading, b_reading in message[1]:
                pair = self.pairs.get(pair_id)
                if pair is not None:
                    pair.a.meter.elsewhere, pair.b.meter.elsewhere = a_reading, b_reading
        elif kind == "dtmf":
            _, pair_id, index, digit = message
            pair = self.pairs.get(pair_id)
            if pair is not None:
                self._loop.call_soon(_tell, (pair.a, pair.b)[index], digit)
        elif kind == "home":
            self._replies[message[1]] = message[2]
        elif kind == "ready":
            self.ready.set_result(None)


class Pair:
    """Two bridged endpoints a worker carries: what brings them home."""

    def __init__(self, worker: Worker, pair_id: int, a: MediaEndpoint, b: MediaEndpoint) -> None:
        self.worker = worker
        self.id = pair_id
        self.a, self.b = a, b

    def come_home(self, rejoin: bool = True) -> None:
        a, b = self.a, self.b
        if a.away is not self:
            return
        try:
            states = self.worker.recall(self)
        except WorkerLost:
            return  # fail() took both back, as they left
        a.away = b.away = None
        for index, endpoint in enumerate((a, b)):
            if states is not None:  # None: the worker could not set the bridge up
                resume(endpoint, states[index])
            _take_back(endpoint)
        if rejoin:
            join(a, b)


def _take_back(endpoint: MediaEndpoint) -> None:
    endpoint._rtp.take_back()
    endpoint._rtcp.take_back()


def _tell(endpoint: MediaEndpoint, digit: str) -> None:
    if endpoint.on_dtmf is not None:
        endpoint.on_dtmf(digit)
