"""A call queue as the configuration file's `queues:` and the API write it; the router
runs it (destination `queue:NAME`, pbx/queue/engine.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar, Literal, get_args

from pydantic import Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from ipbx.pbx.destination import Destination, Kind
from ipbx.pbx.schema import DestinationField, Digits, Item, Model, Name, PromptField, Where

Strategy = Literal[
    "ringall", "leastrecent", "fewestcalls", "roundrobin", "linear", "random", "weighted"
]  # fmt: skip
STRATEGIES: tuple[str, ...] = get_args(Strategy)


class QueueAgent(Model):
    """An extension that answers the queue's callers, and its penalty: an agent with a
    higher penalty is offered a call only when no agent with a lower one is available
    (`weighted` takes the penalty as a weight instead)."""

    extension: Digits
    penalty: int = Field(default=0, ge=0, le=100)

    @model_validator(mode="before")
    @classmethod
    def _bare_extension(cls, value: Any) -> Any:
        """``"1001"`` is written for ``{extension: "1001"}``."""
        if isinstance(value, str | int):
            return {"extension": str(value)}
        return value


class QueueConfig(Item):
    """A call queue (ACD): callers wait in line and are offered, one by one, to its
    agents as `strategy` picks them. `ring_seconds` is one offer to an agent;
    `wrapup_seconds` follow an agent's queue call, in all of the agent's queues. A
    caller waits at most `max_wait_seconds`, and goes to `timeout_destination` then,
    or at once when the queue already holds `max_callers` or no agent is logged in."""

    destination_kind: ClassVar[Kind | None] = Kind.QUEUE

    name: Name
    strategy: Strategy = "ringall"
    agents: list[QueueAgent] = Field(min_length=1)
    ring_seconds: int = Field(default=15, ge=1, le=600)
    wrapup_seconds: int = Field(default=0, ge=0, le=3600)
    max_wait_seconds: int = Field(default=300, ge=1, le=86400)
    max_callers: int = Field(default=50, ge=1, le=10000)
    timeout_destination: DestinationField = Destination(Kind.HANGUP)
    # What a waiting caller hears besides the music (pbx/queue/waiting.py): its position
    # and estimated wait every so many seconds (0: never), an announcement (text or
    # file:PATH), and the key that asks for a callback.
    announce_position_seconds: int = Field(default=0, ge=0, le=3600)
    periodic_announcement: PromptField | None = None
    callback_key: Literal["0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "*", "#"] | None = None
    service_level_seconds: int = Field(default=20, ge=1, le=3600)

    @field_validator("agents")
    @classmethod
    def _unique_agents(cls, value: list[QueueAgent]) -> list[QueueAgent]:
        seen: list[str] = []
        for index, agent in enumerate(value):
            if agent.extension in seen:
                raise PydanticCustomError(
                    "duplicate_agent",
                    "{extension} is listed twice",
                    {"extension": agent.extension, "at": (index,)},
                )
            seen.append(agent.extension)
        return value

    def destinations(self) -> Iterator[tuple[Where, Destination]]:
        yield ("timeout_destination",), self.timeout_destination
