"""The call queues' reporting over a scripted day: the queue_log export and the analytics
by queue and by agent equal what the script itself says happened, and the export writes
the lines of Asterisk's documented queue_log example exactly."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime

from ipbx.pbx.events import Event
from ipbx.pbx.queue.model import NONE, QueueEvent
from tests.support.apiclient import Api
from tests.support.queues import FakeQueueDesk

DAY = datetime(2026, 12, 1, tzinfo=UTC).timestamp()
HOUR = 3600.0
SERVICE_LEVEL = {"sales": 20, "support": 30}  # FakeQueueDesk's targets
WRAPUP = {"sales": 10, "support": 0}


@dataclass
class Caller:
    """What one caller did, as a supervisor would tell it."""

    call_id: str
    queue: str
    number: str
    enters: float  # seconds into the day
    wait: int  # seconds until answered, or until it left the queue
    outcome: str  # answered, abandoned, timeout, empty (no agent logged in), callback
    agent: str = NONE
    talk: int = 0
    unanswered: list[str] = field(default_factory=list)  # agents who rang 15 s each
    answered_after_callback: int = 0  # a callback: seconds from entering to the answer


SCRIPT = [
    Caller("c0", "sales", "+15550100", 7 * HOUR, 0, "empty"),
    Caller("c1", "sales", "+15550101", 9 * HOUR, 18, "answered", "1002", 120, ["1001"]),
    Caller("c2", "sales", "+15550102", 9 * HOUR + 300, 5, "answered", "1001", 60),
    Caller("c3", "sales", "+15550103", 10 * HOUR, 3, "abandoned"),
    Caller("c4", "sales", "+15550104", 10 * HOUR + 1800, 40, "abandoned"),
    Caller("c5", "sales", "+15550105", 11 * HOUR, 300, "timeout"),
    Caller("c6", "sales", "+15550106", 12 * HOUR, 30, "callback", "1001", 45,
           answered_after_callback=95),
    # c1's caller again, the same day: c1 did not resolve the matter
    Caller("c7", "sales", "+15550101", 15 * HOUR, 25, "answered", "1002", 30),
    Caller("c8", "support", "+15550108", 13 * HOUR, 12, "answered", "1001", 200),
]  # fmt: skip


def events_of(caller: Caller) -> list[QueueEvent]:
    """The queue_log events the engine writes for what the caller did."""
    t = DAY + caller.enters

    def at(offset: float, agent: str, verb: str, *data: object) -> QueueEvent:
        return QueueEvent(t + offset, caller.call_id, caller.queue, agent, verb,
                          tuple(str(d) for d in data))  # fmt: skip

    out = [at(0, NONE, "ENTERQUEUE", "", caller.number, 1)]
    out += [at(15 * (i + 1), a, "RINGNOANSWER", 15000) for i, a in enumerate(caller.unanswered)]
    if caller.outcome == "abandoned":
        out.append(at(caller.wait, NONE, "ABANDON", 1, 1, caller.wait))
    elif caller.outcome == "timeout":
        out.append(at(caller.wait, NONE, "EXITWITHTIMEOUT", 1, 1, caller.wait))
    elif caller.outcome == "empty":
        out.append(at(caller.wait, NONE, "EXITEMPTY", 1, 1, caller.wait))
    else:
        hold = caller.wait
        if caller.outcome == "callback":
            out.append(at(caller.wait, NONE, "EXITWITHKEY", 1, 1, 1, caller.wait))
            hold = caller.answered_after_callback
        out.append(at(hold, caller.agent, "CONNECT", hold, f"{caller.call_id}-agent", 3))
        out.append(at(hold + caller.talk, caller.agent, "COMPLETECALLER", hold, caller.talk, 1))
    return out


AGENT_EVENTS = [
    QueueEvent(DAY + 8 * HOUR, NONE, "sales", "1001", "ADDMEMBER", ("",)),
    # A "|" in a field would cut the export's line: it is written as a space.
    QueueEvent(DAY + 12.5 * HOUR, NONE, "sales", "1002", "PAUSE", ("lunch|late",)),
    QueueEvent(DAY + 13 * HOUR, NONE, "sales", "1002", "UNPAUSE", ("",)),
]


def expected(callers: list[Caller], agent: str | None = None) -> dict[str, object]:
    """The figures worked out from the script alone (definitions: pbx/queue/analytics.py)."""
    answered = [c for c in callers if c.outcome in ("answered", "callback")]
    if agent is not None:
        answered = [c for c in answered if c.agent == agent]
    holds = {c.call_id: c.answered_after_callback or c.wait for c in callers}
    in_time = [c for c in answered if holds[c.call_id] <= SERVICE_LEVEL[c.queue]]
    again = {
        c.call_id
        for c in SCRIPT
        for d in SCRIPT
        if d.number == c.number and d.queue == c.queue and 0 < d.enters - c.enters <= 24 * HOUR
    }
    return {
        "offered": len(callers),
        "answered": len(answered),
        "abandoned": sum(1 for c in callers if c.outcome == "abandoned" and c.wait > 5),
        "abandoned_within_5s": sum(1 for c in callers if c.outcome == "abandoned" and c.wait <= 5),
        "timed_out": sum(1 for c in callers if c.outcome == "timeout"),
        "no_agent": sum(1 for c in callers if c.outcome == "empty"),
        "callbacks": sum(1 for c in callers if c.outcome == "callback"),
        "service_level": round(len(in_time) / len(callers), 4),
        "average_speed_of_answer": round(
            sum(holds[c.call_id] for c in answered) / len(answered), 3
        ),
        "average_handling_time": round(
            sum(c.talk + WRAPUP[c.queue] for c in answered) / len(answered), 3
        ),
        "longest_wait": float(max(holds[c.call_id] for c in callers)),
        "first_call_resolution": round(
            sum(1 for c in answered if c.call_id not in again) / len(answered), 4
        ),
    }


def test_a_scripted_day_reads_back_as_the_script_says(api: Api) -> None:
    api.pbx.queues = FakeQueueDesk(DAY)  # type: ignore[assignment]
    published: list[Event] = []
    api.pbx.events.subscribe(published.append)
    day = sorted([e for c in SCRIPT for e in events_of(c)] + AGENT_EVENTS, key=lambda e: e.time)
    for event in day:
        api.pbx.queue_log.record(event)
    assert api.store.queue_log_between(None, None) == []  # recording waits for no database
    asyncio.run(api.pbx._flush())  # the write-behind's round, every 0.1 s in a server
    span = {"from": DAY, "to": DAY + 24 * HOUR}
    headers = api.headers(api.reader)

    # The export: every event, one line each, in order; a queue's alone on asking.
    exported = api.client.get("/queues/log", params=span, headers=headers)
    assert exported.status_code == 200
    assert exported.headers["content-type"].startswith("text/plain")
    lines = exported.text.splitlines()
    assert len(lines) == len(day)
    assert lines[0] == f"{int(DAY + 7 * HOUR)}|c0|sales|NONE|ENTERQUEUE||+15550100|1"
    assert lines[2] == f"{int(DAY + 8 * HOUR)}|NONE|sales|1001|ADDMEMBER|"
    c1 = int(DAY + 9 * HOUR)
    assert lines[3:7] == [
        f"{c1}|c1|sales|NONE|ENTERQUEUE||+15550101|1",
        f"{c1 + 15}|c1|sales|1001|RINGNOANSWER|15000",
        f"{c1 + 18}|c1|sales|1002|CONNECT|18|c1-agent|3",
        f"{c1 + 138}|c1|sales|1002|COMPLETECALLER|18|120|1",
    ]
    assert f"{int(DAY + 12.5 * HOUR)}|NONE|sales|1002|PAUSE|lunch late" in lines
    support = api.client.get("/queues/log", params={**span, "queue": "support"}, headers=headers)
    assert [line.split("|")[4] for line in support.text.splitlines()] == [
        "ENTERQUEUE", "CONNECT", "COMPLETECALLER",
    ]  # fmt: skip
    morning = api.client.get("/queues/log", params={"to": DAY + 9 * HOUR + 1}, headers=headers)
    assert len(morning.text.splitlines()) == 4

    # Analytics by queue and by agent equal the script's own figures.
    by_queue = api.client.get("/analytics", params={**span, "by": "queue"}, headers=headers)
    assert by_queue.status_code == 200
    queues = by_queue.json()["queues"]
    sales = [c for c in SCRIPT if c.queue == "sales"]
    assert queues == {
        "sales": expected(sales),
        "support": expected([c for c in SCRIPT if c.queue == "support"]),
    }
    assert (queues["sales"]["offered"], queues["sales"]["answered"]) == (8, 4)
    assert queues["sales"]["service_level"] == 0.25  # c1 and c2 of 8 within 20 s
    assert queues["sales"]["first_call_resolution"] == 0.75  # c1 was called about again
    by_agent = api.client.get("/analytics", params={**span, "by": "agent"}, headers=headers)
    agents = by_agent.json()["queues"]
    rang = {a: [c for c in SCRIPT if a == c.agent or a in c.unanswered] for a in ("1001", "1002")}
    assert agents == {agent: expected(callers, agent) for agent, callers in rang.items()}

    # What callers and supervisors follow went out on the bus as it happened.
    kinds = [e.type for e in published]
    assert kinds.count("queue.joined") == len(SCRIPT)  # and nothing for EXITEMPTY
    assert kinds.count("queue.answered") == 5
    assert kinds.count("queue.abandoned") == 2
    callback = next(e for e in published if e.type == "queue.callback")
    assert callback.data == {"call_id": "c6", "queue": "sales", "position": 1, "wait": 30}


def test_the_export_writes_asterisks_documented_queue_log_lines(api: Api) -> None:
    """The example of the Asterisk book (3rd edition, chapter ACD: the queue_log file)."""
    documented = [
        "1292281046|psy1-1292281041.87|7100|NONE|ENTERQUEUE||4165551212|1",
        "1292281046|psy1-1292281041.87|7100|Local/9996@MemberConnector|RINGNOANSWER|0",
        "1292281048|psy1-1292281041.87|7100|Local/9990@MemberConnector|CONNECT|2"
        "|psy1-1292281046.90|0",
        "1292284121|psy1-1292281041.87|7100|Local/9990@MemberConnector|COMPLETECALLER|2|3073|1",
        "1292284222|MANAGER|7100|Local/9990@MemberConnector|REMOVEMEMBER|",
        "1292284491|MANAGER|7100|Local/9990@MemberConnector|ADDMEMBER|",
    ]
    for line in documented:
        epoch, call_id, queue, agent, verb, *data = line.split("|")
        fields = tuple(data) if data != [""] else ()
        api.pbx.queue_log.record(QueueEvent(float(epoch), call_id, queue, agent, verb, fields))
    api.store.save_queue_log(api.pbx.queue_log.take())
    exported = api.client.get("/queues/log", headers=api.headers(api.reader))
    assert exported.text == "".join(line + "\n" for line in documented)
