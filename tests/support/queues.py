"""A stand-in for the call-queue engine as the API sees it (api/services.py QueueDesk):
queues with their targets and agents whose states the API sets, for the API's tests."""

from __future__ import annotations

from dataclasses import dataclass, replace

from ipbx.api.services import AgentAction
from ipbx.pbx.queue.model import AgentState, AgentStatus, QueueStatus, WaitingCaller

_STATES: dict[str, AgentState] = {
    "login": AgentState.AVAILABLE,
    "logout": AgentState.LOGGED_OUT,
    "pause": AgentState.PAUSED,
    "unpause": AgentState.AVAILABLE,
}


@dataclass(frozen=True)
class Targets:
    service_level_seconds: float
    wrapup_seconds: float


@dataclass(frozen=True)
class Configured:
    config: Targets


class FakeQueueDesk:
    def __init__(self, now: float) -> None:
        self.now = now
        self.queues = {"sales": Configured(Targets(20, 10)), "support": Configured(Targets(30, 0))}
        self.members = {"sales": ["1001", "1002"], "support": ["1001"]}
        self.agents = {
            "1001": AgentStatus("1001", AgentState.IN_CALL, now - 60, 3),
            "1002": AgentStatus("1002", AgentState.AVAILABLE, now - 300, 1),
        }
        self.waiting = {
            "sales": (
                WaitingCaller("c9", "+15550109", "Carol", 1, 42.0, False),
                WaitingCaller("c10", "+15550110", None, 2, 7.5, True),
            ),
            "support": (),
        }

    def status(self, name: str) -> QueueStatus:
        return QueueStatus(
            name=name,
            strategy="ringall",
            waiting=self.waiting[name],
            agents=tuple(self.agents[e] for e in self.members[name]),
            service_level_today=0.75 if name == "sales" else None,
        )

    def set_agent(self, extension: str, action: AgentAction, reason: str | None) -> AgentStatus:
        self.agents[extension] = replace(
            self.agents[extension],
            state=_STATES[action],
            since=self.now,
            reason=reason if action == "pause" else None,
        )
        return self.agents[extension]
