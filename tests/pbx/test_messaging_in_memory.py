"""Text messages (SIP MESSAGE, RFC 3428) between extensions and through a trunk, in the
in-memory testbed: relayed to every phone of the extension, stored for an extension away
and delivered when it registers, each message stored once; bad input refused."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from sqlalchemy.exc import OperationalError

from ipbx.pbx.events import Event
from ipbx.pbx.messaging import FLOOD_MESSAGES
from ipbx.sip.message import Request, Response
from ipbx.sip.transaction import Address, ServerTransaction
from ipbx.sip.uri import NameAddr, Uri
from ipbx.store import MessageRecord, Store
from tests.support.testbed import Testbed, play
from tests.support.user_agents import Phone

RUSSIAN = "Привет, как дела?"
ARABIC = "مرحبا، كيف حالك؟"
PROVIDER = "10.0.0.101"
DID = "+12125550100"
MOBILE = "+12125551234"


def message_to(phone: Phone, number: str, text: str, content_type: str = "text/plain") -> Request:
    to = NameAddr(Uri("sip", number, None, phone.server.host, None))
    request = phone._request("MESSAGE", to.uri, to)
    request.headers.remove("Contact")  # RFC 3428 §4: a MESSAGE carries none
    request.headers.add("Content-Type", content_type)
    request.body = text.encode()
    return request


async def send(phone: Phone, request: Request) -> Response:
    """`request` sent, and again with credentials when challenged: the final answer."""
    response = await phone.transact(request, phone.server)
    if response.status == 407:
        response = await phone.transact(phone.authorized(request, response), phone.server)
    return response


async def stored(lab: Testbed) -> list[MessageRecord]:
    return (await lab.pbx.store.run(Store.list_messages))[1]


def events_of(lab: Testbed) -> list[Event]:
    seen: list[Event] = []
    lab.pbx.events.subscribe(seen.append)
    return seen


def test_a_message_reaches_every_phone_of_the_extension_in_utf8(tmp_path: Path) -> None:
    async def story(lab: Testbed) -> None:
        alice = await lab.registered("1000")
        desk, mobile = await lab.registered("1001"), await lab.registered("1001")
        seen = events_of(lab)
        assert (await send(alice, message_to(alice, "1001", RUSSIAN))).status == 200
        for phone in (desk, mobile):
            got = await phone.requests.take(lambda r: r.method == "MESSAGE", "MESSAGE")
            assert got.body.decode() == RUSSIAN
            assert got.from_.uri.user == "1000"
            assert got.headers.get("Content-Type") == "text/plain;charset=utf-8"
        [record] = await stored(lab)
        assert (record.sender, record.recipient, record.status) == ("1000", "1001", "delivered")
        assert [e.type for e in seen] == ["message.received", "message.status"]
        assert seen[1].data["status"] == "delivered"

    play(tmp_path, story)


def test_a_message_to_an_extension_away_is_accepted_and_delivered_when_it_registers(
    tmp_path: Path,
) -> None:
    async def story(lab: Testbed) -> None:
        alice = await lab.registered("1000")
        request = message_to(alice, "1001", ARABIC)
        assert (await send(alice, request)).status == 202
        [record] = await stored(lab)
        assert record.status == "pending" and record.body == ARABIC
        # The same MESSAGE sent again (a new transaction, same Call-ID and CSeq).
        again = Request(request.headers.copy(), request.body, request.method, request.uri)
        again.headers.remove("Via")
        assert (await send(alice, again)).status == 202
        assert len(await stored(lab)) == 1
        bob = await lab.registered("1001")
        got = await bob.requests.take(lambda r: r.method == "MESSAGE", "stored MESSAGE")
        assert got.body.decode() == ARABIC
        assert got.headers.get("Date") is not None  # when it was sent, RFC 3428 §10
        assert await bob.requests.none_within(2.0, lambda r: r.method == "MESSAGE")
        [record] = await stored(lab)
        assert record.status == "delivered"

    play(tmp_path, story)


def test_bad_messages_are_refused(tmp_path: Path) -> None:
    async def story(lab: Testbed) -> None:
        alice = await lab.registered("1000")
        unauthenticated = await alice.transact(message_to(alice, "1001", "hi"), alice.server)
        assert unauthenticated.status == 407
        html = await send(alice, message_to(alice, "1001", "<b>hi</b>", "text/html"))
        assert html.status == 415
        assert html.headers.get("Accept") == "text/plain, application/im-iscomposing+xml"
        latin1 = message_to(alice, "1001", "hi", "text/plain;charset=iso-8859-1")
        assert (await send(alice, latin1)).status == 415
        huge = await send(alice, message_to(alice, "1001", "x" * (64 * 1024 + 1)))
        assert huge.status == 413
        assert (await send(alice, message_to(alice, "1999", "hi"))).status == 404
        assert await stored(lab) == []
        store = lab.pbx.store.blocking

        def locked(*_args: object) -> None:
            raise OperationalError("INSERT", {}, Exception("database is locked"))

        store.save_message = locked  # type: ignore[method-assign,assignment]
        lost = await send(alice, message_to(alice, "1001", "hi"))
        assert (lost.status, lost.headers.get("Retry-After")) == (500, "5")
        del store.save_message

    def edit(config: dict[str, Any]) -> None:
        config["sip"]["max_message_size"] = 100_000

    play(tmp_path, story, edit)


def test_a_flood_is_answered_503_with_retry_after(tmp_path: Path) -> None:
    async def story(lab: Testbed) -> None:
        alice = await lab.registered("1000")
        answers = [
            await alice.transact(message_to(alice, "1001", "spam"), alice.server)
            for _ in range(FLOOD_MESSAGES + 1)
        ]
        assert {a.status for a in answers[:FLOOD_MESSAGES]} == {407}
        assert answers[-1].status == 503
        assert answers[-1].headers.get("Retry-After") == "10"

    play(tmp_path, story)


def trunk_with_messaging(config: dict[str, Any]) -> None:
    config["country"] = "US"
    config["trunks"] = [
        {"name": "provider", "host": f"{PROVIDER}:5060", "allow_from": [f"{PROVIDER}:5060"],
         "options_interval": 0, "messaging": True}
    ]  # fmt: skip
    config["outbound_routes"] = [
        {"name": "e164", "pattern": "_+1NXXNXXXXXX", "trunks": ["provider"]}
    ]
    config["numbers"] = [{"number": DID, "destination": "extension:1001"}]
    config["blacklist"] = [{"pattern": "+12125550666"}]


def test_messages_to_and_from_outside_numbers_go_through_the_trunk(tmp_path: Path) -> None:
    async def story(lab: Testbed) -> None:
        gateway = lab.gateway(PROVIDER, caller=MOBILE)
        alice, bob = await lab.registered("1000"), await lab.registered("1001")
        assert (await send(alice, message_to(alice, MOBILE, RUSSIAN))).status == 200
        out = await gateway.requests.take(lambda r: r.method == "MESSAGE", "MESSAGE out")
        assert out.uri.user == MOBILE and out.body.decode() == RUSSIAN
        incoming = message_to(gateway, DID, ARABIC)
        assert (await gateway.transact(incoming, gateway.server)).status == 200
        got = await bob.requests.take(lambda r: r.method == "MESSAGE", "MESSAGE in")
        assert got.body.decode() == ARABIC and got.from_.uri.user == MOBILE
        records = await stored(lab)
        assert [(r.direction, r.status, r.trunk) for r in records] == [
            ("inbound", "delivered", "provider"),
            ("outbound", "delivered", "provider"),
        ]
        not_ours = message_to(gateway, "+12125550199", "hi")
        assert (await gateway.transact(not_ours, gateway.server)).status == 404
        spam = message_to(gateway, DID, "spam")  # from a blacklisted mobile
        spam.headers.set("From", f"<sip:+12125550666@{PROVIDER}>;tag=s1")
        assert (await gateway.transact(spam, gateway.server)).status == 403
        assert len(await stored(lab)) == 2

    play(tmp_path, story, trunk_with_messaging)


def test_a_route_without_a_messaging_trunk_refuses_messages(tmp_path: Path) -> None:
    def edit(config: dict[str, Any]) -> None:
        trunk_with_messaging(config)
        config["trunks"][0]["messaging"] = False

    async def story(lab: Testbed) -> None:
        alice = await lab.registered("1000")
        assert (await send(alice, message_to(alice, MOBILE, "hi"))).status == 404

    play(tmp_path, story, edit)


IS_COMPOSING = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    '<isComposing xmlns="urn:ietf:params:xml:ns:im-iscomposing"><state>active</state>'
    "<contenttype>text/plain</contenttype></isComposing>"
)


def test_is_composing_is_relayed_not_stored_and_a_phones_refusal_fails_the_message(
    tmp_path: Path,
) -> None:
    async def story(lab: Testbed) -> None:
        alice, bob = await lab.registered("1000"), await lab.registered("1001")
        composing = message_to(alice, "1001", IS_COMPOSING, "application/im-iscomposing+xml")
        assert (await send(alice, composing)).status == 200
        got = await bob.requests.take(lambda r: r.method == "MESSAGE", "is-composing")
        assert got.content_type == "application/im-iscomposing+xml"
        away = message_to(alice, "1002", IS_COMPOSING, "application/im-iscomposing+xml")
        assert (await send(alice, away)).status == 480
        assert await stored(lab) == []

        def refuse(request: Request, _source: Address, tx: ServerTransaction | None) -> None:
            assert tx is not None
            bob.endpoint.reply(tx, 488)

        bob.on_request = refuse  # type: ignore[method-assign,assignment]
        seen = events_of(lab)
        assert (await send(alice, message_to(alice, "1001", "hi"))).status == 488
        [record] = await stored(lab)
        assert record.status == "failed"
        assert [(e.type, e.data["status"]) for e in seen] == [
            ("message.received", "pending"),
            ("message.status", "failed"),
        ]

    play(tmp_path, story)


def test_a_phone_that_does_not_answer_gets_the_message_when_it_answers_again(
    tmp_path: Path,
) -> None:
    """The sender is told 202 before its own transaction times out; the MESSAGE to the
    silent phone times out and stays pending. When the phone answers the PBX's OPTIONS
    again (it was unreachable), the message goes out."""

    async def story(lab: Testbed) -> None:
        alice, bob = await lab.registered("1000"), await lab.registered("1001")
        silent = True
        lab.network.lose(lambda d: silent and d.dest == bob.address)
        loop = asyncio.get_running_loop()
        started = loop.time()
        assert (await send(alice, message_to(alice, "1001", RUSSIAN))).status == 202
        assert loop.time() - started < 32  # before the sender's Timer F
        await asyncio.sleep(70)  # the MESSAGE and the first OPTIONS time out
        [record] = await stored(lab)
        assert record.status == "pending"
        assert not lab.pbx.location.reachable("1001", time.time())
        silent = False
        got = await bob.requests.take(lambda r: r.method == "MESSAGE", "MESSAGE again")
        assert got.body.decode() == RUSSIAN
        await asyncio.sleep(1)  # virtual time: the store's thread writes the status
        [record] = await stored(lab)
        assert record.status == "delivered"

    play(tmp_path, story)
