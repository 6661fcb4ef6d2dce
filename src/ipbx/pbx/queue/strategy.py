"""Who is offered the next caller: each strategy a small pure function over the agents'
figures, as Asterisk's app_queue names them.

`pick` takes every agent of the queue with whether it may be offered a call now, and
returns the extensions to ring at once: all of them for ``ringall``, one for the
others, none when no agent is available. An unavailable agent is never picked. Penalties
rank agents: one with a higher penalty is picked only when no available agent has a
lower one; ``weighted`` instead takes every available agent, each with the weight
1/(1+penalty), as Asterisk's ``wrandom`` uses the penalty as a weight.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Candidate:
    """An agent of the queue as a strategy sees it."""

    extension: str
    penalty: int
    available: bool
    last_call_ended: float  # epoch seconds its last queue call ended; 0.0 for never
    calls_taken: int  # queue calls answered in this queue


def pick(
    strategy: str,
    agents: Sequence[Candidate],
    *,
    after: str | None = None,
    rng: random.Random | None = None,
) -> list[str]:
    """The extensions to offer the next caller to, in the queue's `agents` order.
    `after` is the agent offered the queue's previous call (roundrobin goes on from it)."""
    available = [agent for agent in agents if agent.available]
    if not available:
        return []
    chooser = rng or random.Random()
    if strategy == "weighted":
        weights = [1.0 / (1 + agent.penalty) for agent in available]
        return [chooser.choices(available, weights)[0].extension]
    lowest = min(agent.penalty for agent in available)
    tier = [agent for agent in available if agent.penalty == lowest]
    if strategy == "ringall":
        return [agent.extension for agent in tier]
    if strategy == "roundrobin":
        return [_next_after(agents, tier, after)]
    if strategy == "random":
        return [chooser.choice(tier).extension]
    return [min(tier, key=_ORDER[strategy]).extension]


# The one-agent strategies that rank by a figure; min() keeps the first of equals, so
# ties go to the agent listed first.
_ORDER: dict[str, Callable[[Candidate], float]] = {
    "linear": lambda agent: 0.0,
    "leastrecent": lambda agent: agent.last_call_ended,
    "fewestcalls": lambda agent: float(agent.calls_taken),
}


def _next_after(agents: Sequence[Candidate], tier: Sequence[Candidate], after: str | None) -> str:
    """The first agent of `tier` after `after` in the queue's order, round the end."""
    names = [agent.extension for agent in agents]
    start = names.index(after) + 1 if after in names else 0
    eligible = {agent.extension for agent in tier}
    for offset in range(len(names)):
        name = names[(start + offset) % len(names)]
        if name in eligible:
            return name
    raise AssertionError("the tier is part of the agents")
