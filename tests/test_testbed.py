"""The in-memory test harness (tests/support/) keeps its promises: virtual time jumps
over idle waits but not over a thread at work; the network delivers in order, to
whoever is bound at the address, minus what a loss rule drops; a failing story shows
the ladder of what was sent, and an error the PBX logs fails the test."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from ipbx.sip.message import Request
from ipbx.sip.transaction import Address, ServerTransaction
from ipbx.sip.transport.endpoint import SipEndpoint
from tests.support.clock import run_in_virtual_time
from tests.support.network import Datagram, Network
from tests.support.testbed import Testbed, play

SERVER = Address("UDP", "10.0.0.1", 5060)


def test_an_hour_of_virtual_time_passes_at_once() -> None:
    async def wait() -> float:
        loop = asyncio.get_running_loop()
        before = loop.time()
        await asyncio.sleep(3600)
        return loop.time() - before

    started = time.monotonic()
    assert run_in_virtual_time(wait()) == pytest.approx(3600)
    assert time.monotonic() - started < 1


def test_a_thread_at_work_is_not_overtaken_by_a_time_out() -> None:
    """Were the clock to jump while the thread sleeps, the 10 s time-out would fire first."""

    def slow() -> str:
        time.sleep(0.05)
        return "done"

    async def work() -> str:
        return await asyncio.wait_for(asyncio.to_thread(slow), 10)

    assert run_in_virtual_time(work()) == "done"


class _Listener:
    """A transaction user that notes the method of every request it gets."""

    def __init__(self) -> None:
        self.methods: list[str] = []

    def on_request(self, request: Request, source: Address, tx: ServerTransaction | None) -> None:
        self.methods.append(request.method)

    def on_cancel(self, tx: ServerTransaction) -> None:
        """Not expected here."""

    def on_no_ack(self, tx: ServerTransaction) -> None:
        """Not expected here."""


def test_datagrams_arrive_in_order_and_a_loss_rule_drops_its_own() -> None:
    async def exchange() -> list[str]:
        network = Network()
        listener = _Listener()
        endpoint = SipEndpoint(listener)
        phone = Address("UDP", "10.0.0.11", 5060)
        network.attach(endpoint, phone)

        def lose_info(d: Datagram) -> bool:
            return d.first_line.startswith("INFO")

        network.lose(lose_info)
        for method in ("OPTIONS", "INFO", "MESSAGE", "NOTIFY"):
            network.send(_request(method), SERVER, phone)
        network.send(_request("OPTIONS"), SERVER, Address("UDP", "10.0.0.99", 5060))  # nobody
        await asyncio.sleep(0.1)
        await endpoint.close()
        assert [d.dest.host for d in network.sent].count("10.0.0.99") == 1
        return listener.methods

    assert run_in_virtual_time(exchange()) == ["OPTIONS", "MESSAGE", "NOTIFY"]


def _request(method: str) -> bytes:
    return (
        f"{method} sip:1000@10.0.0.11:5060 SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK" + method.lower() + "\r\n"
        "Max-Forwards: 70\r\nFrom: <sip:ipbx@10.0.0.1>;tag=a\r\nTo: <sip:1000@10.0.0.1>\r\n"
        f"Call-ID: {method.lower()}@10.0.0.1\r\nCSeq: 1 {method}\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def test_a_failing_story_prints_the_ladder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async def story(lab: Testbed) -> None:
        await lab.registered("1000")
        raise AssertionError("the story failed")

    with pytest.raises(AssertionError, match="the story failed"):
        play(tmp_path, story)
    ladder = capsys.readouterr().out
    assert "10.0.0.11:5060 -> 10.0.0.1:5060  REGISTER sip:10.0.0.1:5060 SIP/2.0" in ladder
    assert "10.0.0.1:5060 -> 10.0.0.11:5060  SIP/2.0 200 OK" in ladder


def test_an_error_the_pbx_logs_fails_the_story(tmp_path: Path) -> None:
    async def story(lab: Testbed) -> None:
        lab.pbx.router.on_invite = None  # type: ignore[assignment,method-assign]
        alice, _ = await lab.registered("1000"), await lab.registered("1001")
        assert (await alice.call("1001").final()).status == 500

    with pytest.raises(AssertionError, match="the PBX logged errors"):
        play(tmp_path, story)
