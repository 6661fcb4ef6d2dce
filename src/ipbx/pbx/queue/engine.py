"""The queue engine: callers wait in line and are offered, in turn, to the agents the
queue's strategy picks (pbx/queue/strategy.py), one call per agent at a time
(pbx/queue/agents.py).

Offers are made in one place, `dispatch`, which runs whenever something changes (a
caller joins or leaves, an offer ends, an agent becomes free, a phone registers) and
never waits: it hands each waiting caller without an offer, oldest queue head first,
the agents picked for it and marks them ringing before anything else can run, so no
agent is offered two calls.
Each caller's own coroutine (`Queues.run`, the call flow of `queue:NAME`) then rings
them through the call engine's forking (Session.dial): the first 200 OK wins, the
others are cancelled, and a phone that answers a moment later gets a BYE
(pbx/call/fork.py). A queue with free agents offers several callers at once, as
Asterisk's ``autofill``.

While it waits the caller is in its queue's waiting room (pbx/queue/waiting.py, run
beside the offers and cancelled when an agent answers): the shared music on hold, the
position and periodic announcements, and the callback key. A caller called back keeps
its place (`_call_back`).

An agent is freed when its queue call ends, however it ends: a BYE from either side,
the session timer or the media time-out (all go through the call registry's `end`);
and every `RECONCILE_SECONDS` each agent marked in a call is checked against the calls
in progress, so a call that vanished without ending cannot hold an agent.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import date

from ipbx.media.announcer import Announcer
from ipbx.pbx.call.engine import Calls
from ipbx.pbx.call.model import Call, Leg
from ipbx.pbx.destination import Destination
from ipbx.pbx.events import EventBus
from ipbx.pbx.features import AGENT_LOGIN, AGENT_PAUSE
from ipbx.pbx.queue.agents import Agents
from ipbx.pbx.queue.config import QueueConfig
from ipbx.pbx.queue.model import (
    CALLBACK,
    CALLBACK_NUMBER,
    NONE,
    AgentStatus,
    QueueEvent,
    QueueLog,
    QueueStatus,
    WaitingCaller,
)
from ipbx.pbx.queue.strategy import Candidate, pick
from ipbx.pbx.queue.waiting import WaitingRoom
from ipbx.pbx.session import Session

log = logging.getLogger("ipbx.queue")

RECONCILE_SECONDS = 10.0
# Recent answers the estimated wait is taken from.
_RECENT_ANSWERS = 20

# Where a caller goes next (the router's `run`).
Follow = Callable[[Session, Destination], Awaitable[None]]


@dataclass(eq=False)
class Waiting:
    """A caller in line (its `Place`)."""

    queue: Queue
    session: Session
    joined: float
    first_position: int
    # The agents picked for it, set by the dispatcher; those ringing for it now; those
    # that let it ring out (offered again only when no other agent is free).
    offer: asyncio.Future[list[str]] | None = None
    ringing: list[str] = field(default_factory=list)
    tried: set[str] = field(default_factory=set)
    # The number to call back, once the caller asked for it and hung up: its place kept.
    callback: str | None = None

    def position(self) -> int:
        return self.queue.waiting.index(self) + 1

    def estimated_wait(self) -> float | None:
        answers = self.queue.recent_waits
        if not answers:
            return None
        return sum(answers) / len(answers) * self.position()


@dataclass(eq=False)
class Queue:
    """A queue's live part, which outlives reloads of its configuration."""

    config: QueueConfig
    room: WaitingRoom
    waiting: list[Waiting] = field(default_factory=list)
    last_offered: str | None = None  # roundrobin goes on after it
    calls_taken: dict[str, int] = field(default_factory=dict)  # per agent, for fewestcalls
    recent_waits: deque[float] = field(default_factory=lambda: deque(maxlen=_RECENT_ANSWERS))
    day: date = field(default_factory=date.today)
    offered_today: int = 0
    within_level_today: int = 0

    def count_day(self) -> None:
        today = date.today()
        if today != self.day:
            self.day, self.offered_today, self.within_level_today = today, 0, 0


@dataclass(frozen=True, slots=True)
class Connected:
    """A queue call an agent answered, until it ends: `uid` is the call id its queue log
    rows carry (the caller's call, which a callback's own call goes on)."""

    queue: Queue
    agent: str
    waited: float
    answered: float
    first_position: int
    uid: str
    callback: bool


class Queues:
    """Every queue and agent; the router runs `run` for `queue:NAME`, the API reads
    `status` and calls `set_agent`."""

    def __init__(
        self,
        calls: Calls,
        queue_log: QueueLog,
        events: EventBus,
        rng: random.Random | None = None,
    ) -> None:
        self.calls = calls
        self.queue_log = queue_log
        # Every queue's announcements, encoded once per codec for all their callers.
        self.announcer = Announcer()
        self.rng = rng or random.Random()
        self.agents = Agents(queue_log, events, self.dispatch)
        self.queues: dict[str, Queue] = {}
        self.connected: dict[str, Connected] = {}  # by Call.id
        calls.on_end.append(self._call_ended)
        self._reconciler: asyncio.Task[None] | None = None

    def update(self, configs: Sequence[QueueConfig]) -> None:
        """Take up the queues' configuration (at start and after each reload); callers
        waiting in a queue that stays keep their places."""
        self.queues = {c.name: self._queue_of(c) for c in configs}
        queues_of: dict[str, list[str]] = {}
        for config in configs:
            for agent in config.agents:
                queues_of.setdefault(agent.extension, []).append(config.name)
        self.agents.update(queues_of)

    def _queue_of(self, config: QueueConfig) -> Queue:
        room = self._room(config)
        queue = self.queues.get(config.name)
        if queue is None:
            return Queue(config, room)
        queue.config, queue.room = config, room
        return queue

    def _room(self, config: QueueConfig) -> WaitingRoom:
        announcement = config.periodic_announcement
        return WaitingRoom(
            self.calls.hold.music,
            config.announce_position_seconds,
            None if announcement is None else str(announcement),
            callback_key=config.callback_key,
            announcer=self.announcer,
            kernel=self.calls.kernel_relay,
        )

    def start(self) -> None:
        self._reconciler = asyncio.ensure_future(self._reconcile_every())

    def close(self) -> None:
        if self._reconciler is not None:
            self._reconciler.cancel()
        self.agents.close()

    # --- the API's ---------------------------------------------------------------------------

    def status(self, name: str) -> QueueStatus:
        """The live picture of a queue; LookupError when there is none."""
        queue = self.queues.get(name)
        if queue is None:
            raise LookupError(f"no queue {name}")
        now = time.time()
        waiting = tuple(
            WaitingCaller(
                w.session.call.uid,
                w.session.caller,
                w.session.call.caller_name,
                index + 1,
                now - w.joined,
                callback=w.callback is not None,
            )
            for index, w in enumerate(queue.waiting)
        )
        agents = tuple(self._agent_status(a.extension) for a in queue.config.agents)
        queue.count_day()
        level = queue.within_level_today / queue.offered_today if queue.offered_today else None
        return QueueStatus(name, queue.config.strategy, waiting, agents, level)

    def _agent_status(self, extension: str) -> AgentStatus:
        return self.agents.get(extension).status()

    def feature_code(self, code: str, extension: str) -> str:
        """Log the agent in to (*45) or out of (*46) all its queues, or pause or
        unpause it (*47); what it hears."""
        try:
            if code == AGENT_PAUSE:
                pausing = self.agents.get(extension).paused is None
                self.set_agent(extension, "pause" if pausing else "unpause")
                return "You are paused." if pausing else "You are taking calls again."
            self.set_agent(extension, "login" if code == AGENT_LOGIN else "logout")
        except LookupError:
            return "You are not an agent of any queue."
        if code == AGENT_LOGIN:
            return "You are logged in to your queues."
        return "You are logged out of your queues."

    def set_agent(self, extension: str, action: str, reason: str | None = None) -> AgentStatus:
        """Log an agent in or out of all its queues, pause or unpause it: LookupError
        for an extension that is no queue's agent, ValueError for another action."""
        return self.agents.set(extension, action, reason)

    # --- a caller in a queue -------------------------------------------------------------------

    async def run(self, session: Session, name: str, then: Follow) -> None:
        """The caller waits in queue `name` until an agent answers (the call goes on
        without the flow), it hangs up, or it is sent on to the queue's time-out
        destination (by `then`, the router's): at once when the queue is full or has no
        agent logged in."""
        after = await self._wait(session, name)
        if after is not None:
            await then(session, after)

    async def _wait(self, session: Session, name: str) -> Destination | None:
        queue = self.queues[name]
        config, call = queue.config, session.call
        if len(queue.waiting) >= config.max_callers:
            log.info("%s: queue %s is full (%d waiting)", call.id, name, len(queue.waiting))
            return config.timeout_destination
        now = time.time()
        position = len(queue.waiting) + 1
        self._write(queue, call.uid, NONE, "ENTERQUEUE", "", session.caller, str(position))
        queue.count_day()
        queue.offered_today += 1
        if not any(self.agents.get(a.extension).logged_in for a in config.agents):
            log.info("%s: queue %s has no agent logged in", call.id, name)
            self._write(queue, call.uid, NONE, "EXITEMPTY", "1", "1", "0")
            return config.timeout_destination
        await session.answer()
        entry = Waiting(queue, session, now, position)
        queue.waiting.append(entry)
        room = asyncio.ensure_future(self._in_room(session, entry))
        try:
            return await self._serve(entry, room)
        except asyncio.CancelledError:
            # The caller hung up while waiting (its call flow is cancelled).
            if entry in queue.waiting and entry.callback is None:
                self._write(queue, call.uid, NONE, "ABANDON", *self._place(entry))
            raise
        finally:
            room.cancel()
            if entry.callback is None:  # else the callback holds the place
                self._leave(entry)

    async def _in_room(self, session: Session, entry: Waiting) -> None:
        """The waiting room, which ends only when the caller asked for a callback; one
        that fails leaves the caller waiting in silence, its place kept."""
        try:
            if await entry.queue.room.wait(session, entry) == CALLBACK:
                return
        except Exception:
            log.warning("%s: the waiting room failed; the caller waits on in silence",
                        session.call.id, exc_info=True)  # fmt: skip
        await asyncio.Future()

    async def _serve(self, entry: Waiting, room: asyncio.Future[None]) -> Destination | None:
        queue, session = entry.queue, entry.session
        config, call = queue.config, session.call
        loop = asyncio.get_running_loop()
        deadline = loop.time() + config.max_wait_seconds
        while True:
            entry.offer = loop.create_future()
            self.dispatch()
            await asyncio.wait(
                (entry.offer, room), timeout=deadline - loop.time(),
                return_when=asyncio.FIRST_COMPLETED,
            )  # fmt: skip
            if room.done():  # the caller asked for a callback: it keeps its place
                key = config.callback_key or ""
                self._write(queue, call.uid, NONE, "EXITWITHKEY", key, *self._place(entry))
                entry.callback = session.variables.get(CALLBACK_NUMBER)
                if entry.callback is not None:
                    self.calls.spawn_task(self._call_back(entry))
                await session.hangup()
                return None
            if not entry.offer.done():
                self._write(queue, call.uid, NONE, "EXITWITHTIMEOUT", *self._place(entry))
                return config.timeout_destination
            agents = entry.offer.result()
            started = loop.time()
            ring = max(1.0, min(config.ring_seconds, deadline - started))
            taken = functools.partial(self._taken, entry, room, started)
            if await session.dial(agents, ring, on_answer=taken) == 200:
                return None
            self._offer_over(entry, None, round((loop.time() - started) * 1000))

    def _taken(
        self, entry: Waiting, room: asyncio.Future[None], ringing_since: float, leg: Leg
    ) -> None:
        """An agent's phone answered `entry`'s caller (the caller is bridged to `leg`).
        The call engine tells us in the turn it reads the 200 OK: were it written when
        the caller's coroutine resumes, a caller who hangs up in between would be
        neither connected nor abandoned."""
        agent = leg.invite.to.uri.user or NONE
        ring_ms = round((asyncio.get_running_loop().time() - ringing_since) * 1000)
        self._offer_over(entry, agent, ring_ms)
        room.cancel()
        self._connected(entry, agent, ringing_since, entry.session.call)

    async def _call_back(self, entry: Waiting) -> None:
        """A callback, at its turn: the agent picked is rung first (as click-to-call
        does) and, once it answers, the number the caller left, through the outbound
        routes. It rings one agent at a time, whatever the strategy."""
        queue, number = entry.queue, entry.callback
        assert number is not None
        loop = asyncio.get_running_loop()
        try:
            while True:
                entry.offer = loop.create_future()
                self.dispatch()
                agents = await entry.offer
                agent, entry.ringing = agents[0], agents[:1]
                for other in agents[1:]:
                    self.agents.not_taken(other, False)
                started, ring = loop.time(), queue.config.ring_seconds
                answer: asyncio.Future[int] = loop.create_future()
                try:
                    call = self.calls.originate(agent, number, ring, answer)
                except (LookupError, PermissionError) as exc:
                    log.warning("queue %s: cannot call %s back: %s", queue.config.name,
                                number, exc)  # fmt: skip
                    return
                try:
                    async with asyncio.timeout(ring + 5):
                        status = await answer
                except TimeoutError:
                    status = 408
                answered = agent if status == 200 else None
                self._offer_over(entry, answered, round((loop.time() - started) * 1000))
                if answered is not None:
                    self._connected(entry, agent, started, call)
                    return
        finally:
            self._leave(entry)

    def _place(self, entry: Waiting) -> tuple[str, str, str]:
        """position, original position, seconds waited: what a caller leaving writes."""
        waited = str(round(time.time() - entry.joined))
        return str(entry.position()), str(entry.first_position), waited

    def _offer_over(self, entry: Waiting, answered_by: str | None, ring_ms: int) -> None:
        ringing, entry.ringing = entry.ringing, []
        for agent in ringing:
            if agent == answered_by:
                continue
            gone = entry.callback is None and entry.session.call.ended
            unanswered = answered_by is None and not gone
            if unanswered:
                entry.tried.add(agent)
                uid = entry.session.call.uid
                self._write(entry.queue, uid, agent, "RINGNOANSWER", str(ring_ms))
            self.agents.not_taken(agent, unanswered)

    def _connected(self, entry: Waiting, agent: str, ringing_since: float, call: Call) -> None:
        """`agent` answered `entry`'s caller on `call` (the caller's own, or a callback's)."""
        queue, uid = entry.queue, entry.session.call.uid
        now = time.time()
        waited = now - entry.joined
        ring_seconds = asyncio.get_running_loop().time() - ringing_since
        queue.waiting.remove(entry)
        queue.recent_waits.append(waited)
        queue.calls_taken[agent] = queue.calls_taken.get(agent, 0) + 1
        queue.count_day()
        if waited <= queue.config.service_level_seconds:
            queue.within_level_today += 1
        self.agents.answered(agent, call.id)
        callback = entry.callback is not None
        self.connected[call.id] = Connected(
            queue, agent, waited, now, entry.first_position, uid, callback
        )
        agent_leg = call.caller if callback else call.callee
        leg_id = agent_leg.invite.call_id if agent_leg is not None else NONE
        self._write(queue, uid, agent, "CONNECT",
                    str(round(waited)), leg_id, str(round(ring_seconds)))  # fmt: skip
        log.info("%s: queue %s answered by %s after %.1f s", call.id, queue.config.name,
                 agent, waited)  # fmt: skip

    def _leave(self, entry: Waiting) -> None:
        """The caller is out of the line (answered, gone, timed out): agents still
        reserved for it are free again."""
        if entry in entry.queue.waiting:
            entry.queue.waiting.remove(entry)
        if entry.offer is not None and not entry.offer.done():
            entry.offer.cancel()
        ringing, entry.ringing = entry.ringing, []
        for agent in ringing:
            self.agents.not_taken(agent, False)
        self.dispatch()

    # --- who is offered which caller -----------------------------------------------------------

    def dispatch(self) -> None:
        """Offer every caller that waits for one the agents its queue's strategy picks,
        while there are free agents; queues whose head has waited longest go first."""
        queues = sorted(
            (q for q in self.queues.values() if q.waiting), key=lambda q: q.waiting[0].joined
        )
        if not queues:
            return
        busy = self._busy_elsewhere()
        for queue in queues:
            for entry in queue.waiting:
                if entry.offer is None or entry.offer.done():
                    continue
                agents = self._pick(queue, entry, busy)
                if not agents:
                    break
                for agent in agents:
                    self.agents.offered(agent)
                entry.ringing = agents
                queue.last_offered = agents[0]
                entry.offer.set_result(agents)

    def _pick(self, queue: Queue, entry: Waiting, busy: set[str]) -> list[str]:
        now = time.time()
        location = self.calls.location
        candidates = []
        for member in queue.config.agents:
            agent = self.agents.get(member.extension)
            free = (
                agent.idle
                and member.extension not in busy
                and bool(location.reachable(member.extension, now))
            )
            candidates.append(
                Candidate(
                    member.extension,
                    member.penalty,
                    free,
                    agent.last_call_ended,
                    queue.calls_taken.get(member.extension, 0),
                )
            )
        fresh = [c for c in candidates if c.extension not in entry.tried]
        if not any(c.available for c in fresh):
            entry.tried.clear()
            fresh = candidates
        return pick(queue.config.strategy, fresh, after=queue.last_offered, rng=self.rng)

    def _busy_elsewhere(self) -> set[str]:
        """Extensions on a call that is no queue's offer (their own calls): not offered."""
        busy: set[str] = set()
        for call in self.calls.calls.values():
            if call.id in self.connected:
                continue
            busy.add(call.from_number)
            if call.callee is not None:
                busy.add(call.callee.invite.to.uri.user or "")
        return busy

    # --- the end of an agent's call -----------------------------------------------------------

    def _call_ended(self, call: Call) -> None:
        connected = self.connected.pop(call.id, None)
        if connected is None:
            return
        talked = str(round(time.time() - connected.answered))
        # The caller's side of a callback is its call's callee: the agent was rung first.
        callers_side = "callee" if connected.callback else "caller"
        verb = "COMPLETECALLER" if call.ended_by == callers_side else "COMPLETEAGENT"
        waited, position = str(round(connected.waited)), str(connected.first_position)
        self._write(connected.queue, connected.uid, connected.agent, verb, waited, talked, position)
        self.agents.call_ended(connected.agent, connected.queue.config.wrapup_seconds)

    async def _reconcile_every(self) -> None:
        while True:
            await asyncio.sleep(RECONCILE_SECONDS)
            self.reconcile()

    def reconcile(self) -> None:
        """Free every agent marked in a queue call that is no longer in progress, and
        every agent marked ringing for no waiting caller (an offer rings agents only
        for a caller in its line: `dispatch` to `_offer_over` or `_leave`)."""
        offered = {a for q in self.queues.values() for w in q.waiting for a in w.ringing}
        for agent in self.agents.ringing():
            if agent.extension not in offered:
                log.warning("agent %s was marked ringing for no waiting caller; freed",
                            agent.extension)  # fmt: skip
                self.agents.not_taken(agent.extension, False)
        live = self.calls.calls
        for agent in self.agents.in_call():
            if agent.call_id is None or agent.call_id not in live:
                log.warning("agent %s was marked in call %s, which is over; freed",
                            agent.extension, agent.call_id)  # fmt: skip
                connected = self.connected.pop(agent.call_id or "", None)
                wrapup = connected.queue.config.wrapup_seconds if connected is not None else 0
                self.agents.call_ended(agent.extension, wrapup)

    def _write(self, queue: Queue, call_id: str, agent: str, event: str, *data: str) -> None:
        self.queue_log.record(
            QueueEvent(time.time(), call_id, queue.config.name, agent, event, data)
        )
