"""Call queues against real peers: SIPp agents (UAS scenarios, each registered from its
own port) answer callers that SIPp places into ipbx's queues.

One ipbx serves every test of the module: a queue per strategy with the agents
1001-1003, two queues sharing agent 1004 (wrap-up), a queue whose only agent has no
phone registered (callers wait there), and one whose agent logs out with *46; both send
their overflow to extension 1009, another SIPp agent. What happened is read back from
the queue log ipbx keeps in its database, and through the API as a supervisor and a
wallboard would read it (the live picture, the queue_log export, the analytics).
"""

from __future__ import annotations

import functools
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from ipbx.pbx.queue.config import STRATEGIES
from tests.support.ports import LOOPBACK, free_port
from tests.support.queue_log import Row, queue_log_rows
from tests.support.server import (
    Extension,
    IpbxServer,
    extension_range,
    make_token,
    start_configured_ipbx,
)
from tests.support.sipp import (
    SippProcess,
    SippResult,
    register_contact,
    run_sipp,
    start_sipp,
    write_users_csv,
)

SCENARIOS = Path(__file__).parent / "scenarios"
EXTENSIONS = extension_range(10)  # 1000 ... 1009
CALLER = EXTENSIONS[0]
BY_NUMBER = {e.number: e for e in EXTENSIONS}
PHONES = ("1001", "1002", "1003", "1004", "1009")  # registered SIPp agents
OVERFLOW = "extension:1009"
CALLS = 10


def _agents(strategy: str) -> list[Any]:
    if strategy == "linear":
        # Listed first, but its penalty keeps it out while 1001 is free.
        return [{"extension": "1003", "penalty": 1}, "1001", "1002"]
    if strategy == "weighted":
        return ["1001", "1002", {"extension": "1003", "penalty": 3}]
    return ["1001", "1002", "1003"]


def _configure(config: dict[str, Any], api_port: int) -> None:
    config["api"] = {"listen": f"{LOOPBACK}:{api_port}"}
    overflow = {"max_wait_seconds": 30, "timeout_destination": OVERFLOW}
    config["queues"] = [
        *({"name": s, "strategy": s, "agents": _agents(s), "ring_seconds": 5} for s in STRATEGIES),
        {"name": "first", "agents": ["1004"], "wrapup_seconds": 2},
        {"name": "second", "agents": ["1004"], "wrapup_seconds": 2},
        {"name": "waiting", "agents": ["1006"], "max_callers": 1, **overflow},
        {"name": "empty", "agents": ["1007"], **overflow},
    ]
    names = [*STRATEGIES, "first", "second", "waiting", "empty"]
    config["numbers"] = [
        {"number": str(600 + i), "destination": f"queue:{name}"} for i, name in enumerate(names)
    ]


def _number(queue: str) -> str:
    return str(600 + [*STRATEGIES, "first", "second", "waiting", "empty"].index(queue))


@dataclass
class QueuePbx:
    server: IpbxServer
    workdir: Path
    agents: dict[str, SippProcess]
    api: httpx.Client

    def rows(
        self, queue: str, ready: Callable[[list[Row]], bool] = bool, timeout: float = 5.0
    ) -> list[Row]:
        """The queue's log as ipbx keeps it, once `ready` says it holds what the test
        waits for."""
        return queue_log_rows(self.server.data_dir, queue, ready, timeout)

    def call(
        self,
        queue_or_code: str,
        hold_ms: int,
        calls: int = 1,
        user: Extension = CALLER,
        scenario: str = "queue_caller",
        background: bool = False,
    ) -> Any:
        """`calls` callers one after another (SIPp -l 1), each staying `hold_ms`."""
        number = queue_or_code if queue_or_code.startswith("*") else _number(queue_or_code)
        users = write_users_csv(self.workdir / f"{user.number}.csv", [user])
        args = ("-s", number, "-inf", str(users), "-d", str(hold_ms), "-l", "1", "-r", "50")
        target, path = f"127.0.0.1:{self.server.port}", SCENARIOS / f"{scenario}.xml"
        start = start_sipp if background else run_sipp
        return start(path, target, *args, calls=calls, workdir=self.workdir / "callers")


@pytest.fixture(scope="module")
def pbx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[QueuePbx]:
    workdir = tmp_path_factory.mktemp("queues")
    api_port = free_port("tcp")
    edit = functools.partial(_configure, api_port=api_port)
    server = start_configured_ipbx(workdir / "ipbx", edit, extensions=EXTENSIONS)
    agents: dict[str, SippProcess] = {}
    try:
        for number in PHONES:
            port = free_port("udp")
            registration = register_contact(server.port, BY_NUMBER[number], port, workdir)
            assert registration.successful == 1, registration.errors()
            agents[number] = start_sipp(
                SCENARIOS / "queue_agent.xml", None, calls=10_000, workdir=workdir / number,
                local_port=port, timeout=600, name=f"agent-{number}",
            )  # fmt: skip
        token = make_token(server.config_path, "admin")
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=f"http://{LOOPBACK}:{api_port}", headers=headers) as api:
            yield QueuePbx(server, workdir, agents, api)
        log = server.log_path.read_text(errors="replace")
        assert "Traceback" not in log, server.log_tail()
    finally:
        results = {number: agent.finish(timeout=0) for number, agent in agents.items()}
        server.stop()
    # Every INVITE an agent got went as its scenario says (no unexpected message).
    for number, result in results.items():
        assert result.failed == 0, (number, result.errors())


def _count(rows: list[Row], event: str) -> int:
    return sum(r.event == event for r in rows)


def _answered(rows: list[Row]) -> Counter[str]:
    """Calls answered per agent, after checking that each caller joined, was connected
    to exactly one agent, and hung up on it."""
    entered = [r.call_id for r in rows if r.event == "ENTERQUEUE"]
    connected = [r.call_id for r in rows if r.event == "CONNECT"]
    completed = [r.call_id for r in rows if r.event == "COMPLETECALLER"]
    assert len(entered) == len(set(entered)) == CALLS
    assert sorted(connected) == sorted(entered) == sorted(completed)
    return Counter(r.agent for r in rows if r.event == "CONNECT")


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_ten_callers_into_three_agents(pbx: QueuePbx, strategy: str) -> None:
    """Ten callers one after another: each answered once, spread as the strategy says.
    Under ringall the three SIPp agents answer every offer within the same millisecond:
    the first 200 OK wins and the others are hung up (no caller connected twice)."""
    callers: SippResult = pbx.call(strategy, hold_ms=300, calls=CALLS)
    assert (callers.successful, callers.failed) == (CALLS, 0), callers.errors()
    answered = _answered(pbx.rows(strategy, lambda rows: _count(rows, "COMPLETECALLER") == CALLS))
    assert sum(answered.values()) == CALLS
    if strategy == "linear":
        assert answered == {"1001": CALLS}  # 1003 has a higher penalty, 1002 comes after
    elif strategy in ("roundrobin", "leastrecent", "fewestcalls"):
        assert sorted(answered.values()) == [3, 3, 4], answered
    elif strategy in ("random", "weighted"):
        assert len(answered) > 1, answered
    if strategy in ("roundrobin", "fewestcalls"):
        assert answered["1001"] == 4  # both start at the first agent listed


def _has(event: str) -> Callable[[list[Row]], bool]:
    return lambda rows: _count(rows, event) > 0


def test_wrapup_holds_an_agent_in_all_its_queues(pbx: QueuePbx) -> None:
    first = pbx.call("first", hold_ms=200)
    second = pbx.call("second", hold_ms=3000)  # it waits out the wrap-up
    assert (first.successful, second.successful) == (1, 1), first.errors() + second.errors()
    [done] = [r for r in pbx.rows("first", _has("COMPLETECALLER")) if r.event == "COMPLETECALLER"]
    [connected] = [r for r in pbx.rows("second", _has("CONNECT")) if r.event == "CONNECT"]
    assert connected.agent == done.agent == "1004"
    # Two seconds of wrap-up after the call in "first" before the call in "second".
    assert 1.9 <= connected.at - done.at <= 3.5


def _waiting_callers(pbx: QueuePbx, queue: str) -> list[dict[str, Any]]:
    """The live picture's waiting callers, once one is there (a supervisor's view)."""
    deadline = time.monotonic() + 10
    while True:
        response = pbx.api.get(f"/queues/{queue}")
        assert response.status_code == 200, response.text
        waiting: list[dict[str, Any]] = response.json()["waiting"]
        if waiting or time.monotonic() > deadline:
            return waiting
        time.sleep(0.05)


def test_abandoned_full_and_empty_queues(pbx: QueuePbx) -> None:
    # A caller waits (the agent has no phone registered) and hangs up after 6 s.
    waiting: SippProcess = pbx.call("waiting", hold_ms=6000, background=True)
    [caller] = _waiting_callers(pbx, "waiting")
    assert (caller["caller"], caller["position"], caller["callback"]) == (CALLER.number, 1, False)
    # The queue holds one caller at most: the next goes to 1009 at once.
    full = pbx.call("waiting", hold_ms=200)
    abandoned = waiting.finish()
    assert (abandoned.successful, full.successful) == (1, 1), abandoned.errors() + full.errors()
    rows = pbx.rows("waiting", lambda rows: len(rows) >= 2)
    assert [r.event for r in rows] == ["ENTERQUEUE", "ABANDON"]

    # 1007, the empty queue's only agent, logs out (*46): its callers go to 1009.
    logout = pbx.call("*46", 0, user=BY_NUMBER["1007"], scenario="uac_feature_code")
    empty = pbx.call("empty", hold_ms=200)
    assert (logout.successful, empty.successful) == (1, 1), logout.errors() + empty.errors()
    rows = pbx.rows("empty", lambda rows: len(rows) >= 3)
    assert [r.event for r in rows] == ["REMOVEMEMBER", "ENTERQUEUE", "EXITEMPTY"]
    log = pbx.server.log_path.read_text(errors="replace")
    assert log.count(f"-> {OVERFLOW}") == 2
    for code in ("*45", "*47", "*47"):  # back in, paused, taking calls again
        assert pbx.call(code, 0, user=BY_NUMBER["1007"], scenario="uac_feature_code").successful
    # A supervisor pauses the agent through the API, as *47 would, with a reason.
    paused = pbx.api.put("/queues/empty/agents/1007", json={"action": "pause", "reason": "lunch"})
    assert paused.status_code == 200, paused.text
    assert (paused.json()["state"], paused.json()["reason"]) == ("paused", "lunch")
    events = [r.event for r in pbx.rows("empty", lambda rows: len(rows) >= 7)]
    assert events[3:] == ["ADDMEMBER", "PAUSE", "UNPAUSE", "PAUSE"]


def test_the_api_reports_what_the_queue_log_holds(pbx: QueuePbx) -> None:
    """After the tests above (in file order): the queue_log export is the log, line by
    line, in Asterisk's format, and the analytics count its calls."""
    rows = pbx.rows("roundrobin", lambda rows: _count(rows, "COMPLETECALLER") == CALLS)
    export = pbx.api.get("/queues/log", params={"queue": "roundrobin"})
    assert export.status_code == 200, export.text
    lines = [line.split("|") for line in export.text.splitlines()]
    assert [(int(f[0]), f[1], f[2], f[3], f[4]) for f in lines] == [
        (int(r.at), r.call_id, r.queue, r.agent, r.event) for r in rows
    ]
    figures = pbx.api.get("/analytics", params={"by": "queue"})
    assert figures.status_code == 200, figures.text
    queues = figures.json()["queues"]
    answered = queues["roundrobin"]
    assert (answered["offered"], answered["answered"], answered["abandoned"]) == (CALLS, CALLS, 0)
    waited = queues["waiting"]
    assert (waited["offered"], waited["answered"], waited["abandoned"]) == (1, 0, 1)
    assert waited["abandoned_within_5s"] == 0
    assert queues["empty"]["no_agent"] == 1
