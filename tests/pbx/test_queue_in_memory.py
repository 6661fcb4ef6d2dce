"""A call queue's agents in the in-memory testbed (tests/support/testbed.py), in virtual
time: an agent who lets three offers in a row ring out is paused with reason no-answer,
and an agent whose queue call the PBX ends itself (the media time-out, as after a lost
BYE) is free again at once, as is one marked busy with a call that no longer exists; a
callback keeps its place; an agent whose phone registers takes the waiting caller; and
the races of a saturated queue (answers crossing time-outs, CANCELs and hang-ups) lose
no caller."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from ipbx.pbx.events import Event
from ipbx.pbx.queue.agents import NO_ANSWER
from ipbx.pbx.queue.model import CALLBACK, CALLBACK_NUMBER, NONE, AgentState, Place, QueueEvent
from ipbx.pbx.session import Session
from tests.support.network import Datagram
from tests.support.testbed import Testbed, play
from tests.support.user_agents import OutgoingCall


class ListLog:
    def __init__(self) -> None:
        self.events: list[QueueEvent] = []

    def record(self, event: QueueEvent) -> None:
        self.events.append(event)


def _queue(media_timeout: float, **settings: Any) -> Any:
    def edit(config: dict[str, Any]) -> None:
        queue = {"name": "q", "strategy": "linear", "agents": ["1001", "1002"], **settings}
        config["queues"] = [queue]
        config["numbers"] = [{"number": "600", "destination": "queue:q"}]
        config["media"]["timeout_seconds"] = media_timeout

    return edit


def _listen(lab: Testbed) -> tuple[list[QueueEvent], list[Event]]:
    queues, log = lab.pbx.queues, ListLog()
    queues.queue_log = queues.agents.queue_log = log
    published: list[Event] = []
    lab.pbx.events.subscribe(published.append)
    return log.events, published


def test_three_unanswered_offers_in_a_row_pause_an_agent(tmp_path: Path) -> None:
    async def story(lab: Testbed) -> None:
        written, published = _listen(lab)
        caller = await lab.registered("1000")
        agents = {n: await lab.registered(n) for n in ("1001", "1002")}
        call = caller.call("600")
        assert (await call.final()).status == 200  # ipbx answers, the caller waits
        [waiting] = lab.pbx.queues.status("q").waiting
        assert (waiting.position, waiting.caller) == (1, "1000")
        # linear, but an agent that let the caller ring out is tried after the other.
        for number in ("1001", "1002") * 3:
            offer = await agents[number].rings()
            assert 4.9 <= await offer.rings_unanswered() <= 5.5
        await call.hung_up(timeout=60)  # max_wait_seconds, then the time-out: hangup
        missed = [(e.agent, e.event) for e in written if e.event == "RINGNOANSWER"]
        assert missed == [("1001", "RINGNOANSWER"), ("1002", "RINGNOANSWER")] * 3
        paused = [(e.agent, e.data) for e in written if e.event == "PAUSE"]
        assert paused == [("1001", (NO_ANSWER,)), ("1002", (NO_ANSWER,))]
        assert written[-1].event == "EXITWITHTIMEOUT"
        for agent in lab.pbx.queues.status("q").agents:
            assert (agent.state, agent.reason) == (AgentState.PAUSED, NO_ANSWER)
        states = [e.data["state"] for e in published if e.type == "agent.state"]
        assert states.count("paused") == 2 and states.count("ringing") == 6
        # *47 from the phone, or the API, unpauses.
        assert lab.pbx.queues.set_agent("1001", "unpause").state is AgentState.AVAILABLE
        [record] = await lab.records()
        assert record.result == "queue"  # no agent answered: missed, counted abandoned

    play(tmp_path, story, _queue(120, ring_seconds=5, max_wait_seconds=40))


def test_an_agent_is_freed_when_the_pbx_ends_its_call_or_the_call_is_gone(
    tmp_path: Path,
) -> None:
    async def story(lab: Testbed) -> None:
        written, _ = _listen(lab)
        caller, agent = await lab.registered("1000"), await lab.registered("1001")
        call = caller.call("600")
        assert (await call.final()).status == 200
        offer = await agent.rings()
        offer.answer()
        # No RTP flows in the testbed: the media time-out ends the call, as it does a
        # call whose BYE was lost; the agent is free at once (no wrap-up here).
        await offer.hung_up(timeout=40)
        await call.hung_up()
        queues = lab.pbx.queues
        [status] = [a for a in queues.status("q").agents if a.extension == "1001"]
        assert (status.state, status.calls_taken) == (AgentState.AVAILABLE, 1)
        assert [e.event for e in written] == ["ENTERQUEUE", "CONNECT", "COMPLETEAGENT"]
        # An agent marked in a call that no longer exists is freed by the reconciliation,
        # and so is one marked ringing for no waiting caller.
        queues.agents.offered("1001")
        queues.agents.answered("1001", "c-gone")
        queues.reconcile()
        assert queues.agents.get("1001").state() is AgentState.AVAILABLE
        queues.agents.offered("1001")
        queues.reconcile()
        assert queues.agents.get("1001").state() is AgentState.AVAILABLE

    play(tmp_path, story, _queue(30))


class CallsBack:
    """A waiting room whose caller asks at once to be called back at `number`."""

    def __init__(self, number: str) -> None:
        self.number = number

    async def wait(self, session: Session, place: Place) -> str:
        await session.answer()
        session.variables[CALLBACK_NUMBER] = self.number
        return CALLBACK


def test_a_callback_keeps_its_place_and_rings_the_agent_then_the_caller(tmp_path: Path) -> None:
    """1000 asks to be called back at 1002 and is hung up; its place is kept (1003, who
    calls next, is second). When 1001 takes calls again the callback is served first:
    1001's phone rings, then 1002's, and the log tells one call, answered."""

    async def story(lab: Testbed) -> None:
        written, _ = _listen(lab)
        queues = lab.pbx.queues
        queues.set_agent("1001", "pause")
        queue = queues.queues["q"]
        room, queue.room = queue.room, CallsBack("1002")
        agent, customer = await lab.registered("1001"), await lab.registered("1002")
        call = (await lab.registered("1000")).call("600")
        assert (await call.final()).status == 200
        await call.hung_up()
        queue.room = room
        later = (await lab.registered("1003")).call("600")
        assert (await later.final()).status == 200
        waiting = queues.status("q").waiting
        assert [(w.caller, w.position, w.callback) for w in waiting] == [
            ("1000", 1, True),
            ("1003", 2, False),
        ]
        queues.set_agent("1001", "unpause")
        (await agent.rings()).answer()
        ringing = await customer.rings()
        ringing.answer()
        assert [(w.caller, w.position) for w in queues.status("q").waiting] == [("1003", 1)]
        assert (await ringing.hang_up()).status == 200
        assert (await later.hang_up()).status == 200
        first = next(e.call_id for e in written if e.event == "ENTERQUEUE")
        story_of_1000 = [e for e in written if e.call_id == first]
        assert [(e.event, e.agent) for e in story_of_1000] == [
            ("ENTERQUEUE", "NONE"),
            ("EXITWITHKEY", "NONE"),
            ("CONNECT", "1001"),
            ("COMPLETECALLER", "1001"),
        ]

    play(tmp_path, story, _queue(120))


def test_an_agent_whose_phone_registers_is_offered_the_waiting_caller(tmp_path: Path) -> None:
    async def story(lab: Testbed) -> None:
        call = (await lab.registered("1000")).call("600")
        assert (await call.final()).status == 200  # no agent's phone is registered: it waits
        assert [w.caller for w in lab.pbx.queues.status("q").waiting] == ["1000"]
        agent = await lab.registered("1002")
        (await agent.rings()).answer()
        await asyncio.sleep(1)  # virtual time: the agent's 200 reaches the PBX
        assert lab.pbx.queues.status("q").waiting == ()
        assert (await call.hang_up()).status == 200

    play(tmp_path, story, _queue(120))


def _two_queues(config: dict[str, Any]) -> None:
    """600: `linear` over 1001 and 1002; 601: `ringall` over the same agents."""
    agents = ["1001", "1002"]
    config["queues"] = [
        {"name": "q", "strategy": "linear", "agents": agents, "ring_seconds": 5},
        {"name": "all", "strategy": "ringall", "agents": agents, "ring_seconds": 5},
    ]
    config["numbers"] = [
        {"number": "600", "destination": "queue:q"},
        {"number": "601", "destination": "queue:all"},
    ]


async def _turns(count: int) -> None:
    """Let the loop go round `count` times: what was sent meanwhile is read in between."""
    for _ in range(count):
        await asyncio.sleep(0)


def _flows_running() -> list[str]:
    """The call flows and waiting rooms still running."""
    names = ("CallFlows.begin", "Queues._in_room")
    return [n for t in asyncio.all_tasks() if (n := t.get_coro().__qualname__) in names]


def test_answers_racing_time_outs_cancels_and_hang_ups_lose_no_caller(tmp_path: Path) -> None:
    """The orders a saturated queue meets, forced one by one: an agent answers as its
    ring time runs out; an agent's 200 OK crosses ipbx's CANCEL and arrives while the
    caller is offered to the next agent, or while it waits for one; the caller hangs up
    as the agent answers; two agents answer a ringall offer at once. Whichever ipbx
    reads first wins, and the other side is hung up: every caller is connected once
    (CONNECT, then COMPLETE*) or abandons, no agent is left ringing, and no call flow
    or waiting room outlives its call."""

    async def story(lab: Testbed) -> None:
        written, _ = _listen(lab)
        queues = lab.pbx.queues
        caller, other_caller = await lab.registered("1000"), await lab.registered("1003")
        agents = {n: await lab.registered(n) for n in ("1001", "1002")}

        async def connect_next(call: OutgoingCall, agent: str) -> None:
            (await agents[agent].rings()).answer()
            await asyncio.sleep(1)
            assert (written[-1].event, written[-1].agent) == ("CONNECT", agent)
            assert (await call.hang_up()).status == 200

        # 1001's 200 OK crosses ipbx's CANCEL (RFC 3261 §9.1), which is lost here: ipbx
        # must ACK and hang up an answer it did not take.
        crossing = {agents["1001"].address}

        def cancel_crossing(datagram: Datagram) -> bool:
            return datagram.dest in crossing and datagram.data.startswith(b"CANCEL")

        lab.network.lose(cancel_crossing)

        # An agent answers as its ring time runs out: the answer or the time-out wins
        # (an answer read before the time-out is taken).
        taken = []
        for early, turns in ((0.001, 0), (0, 0), (0, 1), (0, 2)):
            call = caller.call("600")
            assert (await call.final()).status == 200
            offer = await agents["1001"].rings()
            offer.ring()
            await asyncio.sleep(5 - early)
            await _turns(turns)
            offer.answer()
            await asyncio.sleep(1)
            taken.append(written[-1].event == "CONNECT")
            if taken[-1]:
                assert "BYE" not in [r.method for r in offer.requests.items]  # bridged
                assert (await call.hang_up()).status == 200
                await offer.hung_up()
            else:
                await offer.hung_up()  # too late: ACKed and hung up at once
                await connect_next(call, "1002")
        assert taken[0]
        queues.set_agent("1001", "unpause")  # three time-outs in a row would pause it

        # 1001's answer comes after ipbx gave up on it, while the caller is offered to
        # 1002: it is hung up, and 1002 takes the caller.
        call = caller.call("600")
        assert (await call.final()).status == 200
        late = await agents["1001"].rings()
        late.ring()
        next_offer = await agents["1002"].rings()
        late.answer()
        await late.hung_up()
        next_offer.answer()
        await asyncio.sleep(1)
        assert (written[-1].event, written[-1].agent) == ("CONNECT", "1002")
        assert (await call.hang_up()).status == 200

        # The same while the caller waits with no agent free: 1001 is offered to the
        # next caller meanwhile, 1002 is paused. The late answer is hung up; the first
        # caller is connected when 1002 comes back.
        queues.set_agent("1002", "pause")
        first, second = caller.call("600"), other_caller.call("600")
        assert (await first.final()).status == (await second.final()).status == 200
        late = await agents["1001"].rings()
        late.ring()
        for_second = await agents["1001"].rings(timeout=10)
        late.answer()
        await late.hung_up()
        for_second.answer()
        await asyncio.sleep(1)
        assert (written[-1].event, written[-1].agent) == ("CONNECT", "1001")
        queues.set_agent("1002", "unpause")
        await connect_next(first, "1002")
        assert (await second.hang_up()).status == 200

        crossing.clear()

        # The caller hangs up as the agent answers, the two read in the same turn of the
        # loop or a little apart: the answer read first is taken (CONNECT, then the
        # caller completes the call at once).
        for turns in range(3):
            call = caller.call("600")
            assert (await call.final()).status == 200
            offer = await agents["1001"].rings()
            offer.answer()
            await _turns(turns)
            assert (await call.hang_up()).status == 200
            await offer.hung_up()
            assert [e.event for e in written[-2:]] == ["CONNECT", "COMPLETECALLER"]
        # ... and hangs up while the agent rings: abandoned, the phone cancelled.
        call = caller.call("600")
        assert (await call.final()).status == 200
        offer = await agents["1001"].rings()
        offer.ring()
        assert (await call.hang_up()).status == 200
        await offer.was_cancelled()
        await asyncio.sleep(1)
        assert written[-1].event == "ABANDON"

        # Two agents answer a ringall offer in the same turn: the first 200 OK wins.
        call = caller.call("601")
        assert (await call.final()).status == 200
        offers = [await agents[n].rings() for n in ("1001", "1002")]
        for offer in offers:
            offer.answer()
        await asyncio.sleep(1)
        assert (written[-1].event, written[-1].agent) == ("CONNECT", "1001")
        await offers[1].hung_up()
        assert (await call.hang_up()).status == 200
        await offers[0].hung_up()

        await asyncio.sleep(1)
        stories: dict[str, list[str]] = {}
        for event in written:
            if event.call_id != NONE:
                stories.setdefault(event.call_id, []).append(event.event)
        for events in stories.values():
            outcome = [e for e in events if e not in ("ENTERQUEUE", "RINGNOANSWER")]
            assert outcome in (["CONNECT", "COMPLETECALLER"], ["ABANDON"]), events
        assert len(stories) == 12
        for status in (*queues.status("q").agents, *queues.status("all").agents):
            assert status.state is AgentState.AVAILABLE, status
        assert queues.status("q").waiting == queues.status("all").waiting == ()
        assert not lab.pbx.calls.calls
        assert _flows_running() == []

    play(tmp_path, story, _two_queues)
