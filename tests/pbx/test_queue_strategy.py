"""Who a queue offers its next caller to: every strategy never picks an agent that is not
available, ringall rings all the best-ranked agents and the others one, and an agent
with a higher penalty is picked only when no available agent has a lower one (weighted
takes the penalty as a weight instead)."""

from __future__ import annotations

import random
from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from ipbx.pbx.queue.config import STRATEGIES
from ipbx.pbx.queue.strategy import Candidate, pick

agent_lists = st.lists(
    st.builds(
        Candidate,
        extension=st.sampled_from([str(n) for n in range(1001, 1013)]),
        penalty=st.integers(0, 3),
        available=st.booleans(),
        last_call_ended=st.floats(0, 1e9),
        calls_taken=st.integers(0, 50),
    ),
    max_size=8,
    unique_by=lambda candidate: candidate.extension,
)


@given(
    strategy=st.sampled_from(STRATEGIES),
    agents=agent_lists,
    after=st.none() | st.sampled_from(["1001", "1005", "2000"]),
    seed=st.integers(0, 2**32),
)
def test_only_available_agents_and_the_penalty_rule(
    strategy: str, agents: list[Candidate], after: str | None, seed: int
) -> None:
    picked = pick(strategy, agents, after=after, rng=random.Random(seed))
    available = {a.extension: a for a in agents if a.available}
    assert set(picked) <= set(available)
    assert len(picked) == len(set(picked))
    if not available:
        assert picked == []
        return
    lowest = min(a.penalty for a in available.values())
    best = [a.extension for a in agents if a.available and a.penalty == lowest]
    if strategy == "ringall":
        assert picked == best
    else:
        assert len(picked) == 1
        if strategy != "weighted":
            assert picked[0] in best


def _agents(*penalties: int) -> list[Candidate]:
    return [
        Candidate(str(1001 + index), penalty, True, 0.0, 0)
        for index, penalty in enumerate(penalties)
    ]


def test_each_one_agent_strategy_picks_as_it_says() -> None:
    agents = [
        Candidate("1001", 0, True, last_call_ended=300.0, calls_taken=5),
        Candidate("1002", 0, True, last_call_ended=100.0, calls_taken=7),
        Candidate("1003", 0, True, last_call_ended=200.0, calls_taken=2),
    ]
    assert pick("linear", agents) == ["1001"]
    assert pick("leastrecent", agents) == ["1002"]
    assert pick("fewestcalls", agents) == ["1003"]
    assert pick("roundrobin", agents, after=None) == ["1001"]
    assert pick("roundrobin", agents, after="1002") == ["1003"]
    assert pick("roundrobin", agents, after="1003") == ["1001"]


def test_roundrobin_skips_an_agent_that_is_not_available() -> None:
    agents = _agents(0, 0, 0)
    agents[1] = Candidate("1002", 0, False, 0.0, 0)
    assert pick("roundrobin", agents, after="1001") == ["1003"]


def test_random_spreads_over_the_best_tier_and_weighted_by_one_over_one_plus_penalty() -> None:
    rng = random.Random(7)
    spread = Counter(pick("random", _agents(0, 0, 1), rng=rng)[0] for _ in range(3000))
    assert set(spread) == {"1001", "1002"}
    assert abs(spread["1001"] - spread["1002"]) < 300
    weighted = Counter(pick("weighted", _agents(0, 1, 3), rng=rng)[0] for _ in range(7000))
    # Weights 1, 1/2, 1/4: shares 4/7, 2/7, 1/7.
    assert abs(weighted["1001"] / 7000 - 4 / 7) < 0.03
    assert abs(weighted["1002"] / 7000 - 2 / 7) < 0.03
    assert abs(weighted["1003"] / 7000 - 1 / 7) < 0.03
