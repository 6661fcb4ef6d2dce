"""Agents: an extension that answers queue callers has one state, shared by all its
queues, so wrap-up after a call in one queue holds in every other, and an agent is
offered one call at a time whatever the strategy.

An agent is logged in or out, paused (with a reason) or not, and busy with a queue call
or not (ringing, in call, wrap-up); the state shown (`AgentState`) is the busiest of
those. Agents listed in a queue start logged in, as Asterisk's static members
(``member =`` in queues.conf) are; `*46` or the API logs them out.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date

from ipbx.pbx.events import AGENT_STATE, EventBus
from ipbx.pbx.queue.model import NONE, AgentState, AgentStatus, QueueEvent, QueueLog

# Offers an agent leaves unanswered in a row before it is paused, and the reason given.
UNANSWERED_LIMIT = 3
NO_ANSWER = "no-answer"
ACTIONS = ("login", "logout", "pause", "unpause")


@dataclass(eq=False)
class Agent:
    extension: str
    logged_in: bool = True
    paused: str | None = None  # the reason, "" for none given; None: not paused
    busy: AgentState | None = None  # RINGING, IN_CALL or WRAPUP
    shown: AgentState = AgentState.AVAILABLE
    since: float = field(default_factory=time.time)
    calls_taken: int = 0  # queue calls answered today
    day: date = field(default_factory=date.today)
    last_call_ended: float = 0.0
    unanswered: int = 0  # offers in a row it did not answer
    call_id: str | None = None  # the queue call it is in (Call.id)
    wrapup: asyncio.TimerHandle | None = None

    @property
    def idle(self) -> bool:
        """Whether a queue may offer it a call now."""
        return self.logged_in and self.paused is None and self.busy is None

    def state(self) -> AgentState:
        if not self.logged_in:
            return AgentState.LOGGED_OUT
        if self.busy is not None:
            return self.busy
        return AgentState.PAUSED if self.paused is not None else AgentState.AVAILABLE

    def status(self) -> AgentStatus:
        return AgentStatus(
            self.extension, self.shown, self.since, self.calls_taken, self.paused or None
        )


class Agents:
    """Every agent's state; each change is written to the queue log (per queue) and
    published as agent.state. `on_idle` is told when an agent may take a call again."""

    def __init__(
        self,
        queue_log: QueueLog,
        events: EventBus,
        on_idle: Callable[[], None],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.queue_log = queue_log
        self.events = events
        self.on_idle = on_idle
        self.clock = clock
        self.agents: dict[str, Agent] = {}
        # The queues each extension is an agent of, in configuration order.
        self.queues_of: dict[str, list[str]] = {}

    def update(self, queues_of: dict[str, list[str]]) -> None:
        """The queues each agent serves now (after a reload): a new agent starts logged
        in; one in no queue any more is forgotten, unless a queue call holds it."""
        self.queues_of = queues_of
        for extension in queues_of:
            self.agents.setdefault(extension, Agent(extension, since=self.clock()))
        for extension, agent in list(self.agents.items()):
            if extension not in queues_of and agent.busy is None:
                del self.agents[extension]

    def get(self, extension: str) -> Agent:
        agent = self.agents.get(extension)
        if agent is None:
            raise LookupError(f"{extension} is an agent of no queue")
        return agent

    def set(self, extension: str, action: str, reason: str | None = None) -> AgentStatus:
        """Log in, log out, pause (with `reason`) or unpause an agent, in all its queues."""
        agent = self.get(extension)
        if action not in ACTIONS:
            raise ValueError(f"{action!r}: expected one of {', '.join(ACTIONS)}")
        if action in ("login", "logout") and agent.logged_in != (action == "login"):
            agent.logged_in = action == "login"
            self._write(agent, "ADDMEMBER" if agent.logged_in else "REMOVEMEMBER", ())
        elif action == "pause":
            agent.paused = reason or ""
            self._write(agent, "PAUSE", (agent.paused,))
        elif action == "unpause" and agent.paused is not None:
            agent.paused = None
            agent.unanswered = 0
            self._write(agent, "UNPAUSE", ("",))
        self._changed(agent)
        return agent.status()

    # --- a queue call's course ----------------------------------------------------------------

    def offered(self, extension: str) -> None:
        agent = self.get(extension)
        assert agent.idle
        agent.busy = AgentState.RINGING
        self._changed(agent)

    def not_taken(self, extension: str, unanswered: bool) -> None:
        """The offer is over without this agent: another answered or the caller left
        (`unanswered` False), or the agent let it ring out (True): the third in a row
        pauses it with reason no-answer."""
        agent = self.agents.get(extension)
        if agent is None or agent.busy is not AgentState.RINGING:
            return
        agent.busy = None
        if unanswered:
            agent.unanswered += 1
            if agent.unanswered >= UNANSWERED_LIMIT and agent.paused is None:
                agent.paused = NO_ANSWER
                self._write(agent, "PAUSE", (NO_ANSWER,))
        self._changed(agent)

    def answered(self, extension: str, call_id: str) -> None:
        agent = self.get(extension)
        agent.busy = AgentState.IN_CALL
        agent.call_id = call_id
        agent.unanswered = 0
        today = date.today()
        if agent.day != today:
            agent.day, agent.calls_taken = today, 0
        agent.calls_taken += 1
        self._changed(agent)

    def call_ended(self, extension: str, wrapup_seconds: float) -> None:
        """The agent's queue call is over: wrap-up, then it may take calls again."""
        agent = self.agents.get(extension)
        if agent is None or agent.busy is not AgentState.IN_CALL:
            return
        agent.call_id = None
        agent.last_call_ended = self.clock()
        if wrapup_seconds > 0:
            agent.busy = AgentState.WRAPUP
            loop = asyncio.get_running_loop()
            agent.wrapup = loop.call_later(wrapup_seconds, self._wrapped_up, agent)
        else:
            agent.busy = None
        self._changed(agent)

    def _wrapped_up(self, agent: Agent) -> None:
        agent.wrapup = None
        if agent.busy is AgentState.WRAPUP:
            agent.busy = None
            self._changed(agent)

    def in_call(self) -> list[Agent]:
        return [agent for agent in self.agents.values() if agent.busy is AgentState.IN_CALL]

    def ringing(self) -> list[Agent]:
        return [agent for agent in self.agents.values() if agent.busy is AgentState.RINGING]

    def close(self) -> None:
        for agent in self.agents.values():
            if agent.wrapup is not None:
                agent.wrapup.cancel()

    # --- telling the world ----------------------------------------------------------------------

    def _write(self, agent: Agent, event: str, data: tuple[str, ...]) -> None:
        now = self.clock()
        for queue in self.queues_of.get(agent.extension, ()):
            self.queue_log.record(QueueEvent(now, NONE, queue, agent.extension, event, data))

    def _changed(self, agent: Agent) -> None:
        state = agent.state()
        if state is agent.shown:
            return
        agent.shown, agent.since = state, self.clock()
        status = agent.status()
        self.events.publish(
            AGENT_STATE,
            {
                "extension": status.extension,
                "state": status.state.value,
                "since": status.since,
                "reason": status.reason,
                "calls_taken": status.calls_taken,
                "queues": list(self.queues_of.get(agent.extension, ())),
            },
        )
        if agent.idle:
            self.on_idle()
