"""Message waiting indication (RFC 3842 over RFC 6665) against a running ipbx: a phone
subscribes to its mailbox with digest credentials, hears the counts at once, refreshes
and unsubscribes in the dialog; other packages and other people's mailboxes are refused.
In process, a new message is NOTIFYed to subscribers and, unsolicited, to registered
phones that did not subscribe."""

from __future__ import annotations

import asyncio
import secrets
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ipbx.config import Config
from ipbx.pbx.core import Pbx
from ipbx.sip.message import Request
from ipbx.store.store import Store
from tests.support.mailbox import OWNER, SUMMARY, seed_mailbox, subscribe, write_message_wav
from tests.support.ports import free_port
from tests.support.server import IpbxServer, extension_range, start_configured_ipbx
from tests.support.sipclient import LOOPBACK, SipClient, in_dialog, next_request, reply_to

OTHER = "1000"


def with_mailbox(config: dict[str, Any]) -> None:
    config["extensions"][1]["voicemail"] = {"pin": "1234"}


@pytest.fixture(scope="module")
def mwi_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IpbxServer]:
    workdir = tmp_path_factory.mktemp("mwi")
    seed_mailbox(workdir / "data", new=2, saved=1)
    server = start_configured_ipbx(workdir, with_mailbox)
    try:
        yield server
    finally:
        code = server.stop()
        print(f"--- ipbx (pid {server.pid}, exit {code}) log tail:\n{server.log_tail()}")


def take_notify(client: SipClient) -> Request:
    """The next NOTIFY to this phone, answered 200 as a phone would."""
    notify = next_request(client, "NOTIFY")
    client.send(reply_to(notify, 200, []))
    return notify


def body_of(notify: Request) -> str:
    assert notify.content_type == SUMMARY
    return notify.body.decode()


def test_subscribe_refresh_and_unsubscribe(mwi_server: IpbxServer) -> None:
    phone = SipClient(mwi_server.port)
    try:
        ok = subscribe(phone)
        assert ok is not None and ok.status == 200, ok
        assert ok.headers.get("Expires") == "600"
        assert ok.to.tag and ok.contacts
        notify = take_notify(phone)
        assert notify.headers.get("Event") == "message-summary"
        state = notify.headers.get("Subscription-State") or ""
        assert state.startswith("active;expires=") and 590 <= int(state.split("=")[1]) <= 600
        assert body_of(notify) == (
            "Messages-Waiting: yes\r\n"
            f"Message-Account: sip:{OWNER}@{LOOPBACK}\r\n"
            "Voice-Message: 2/1 (0/0)\r\n"
        )
        # The NOTIFY is in the subscription's dialog: our tags, the 200's Call-ID.
        assert notify.call_id == ok.call_id
        assert notify.to.tag == ok.from_.tag and notify.from_.tag == ok.to.tag

        def in_subscription(cseq: int, expires: int) -> bytes:
            return in_dialog(
                phone, "SUBSCRIBE", str(ok.contacts[0].uri),
                str(ok.headers.get("From")), str(ok.headers.get("To")), ok.call_id, cseq,
                [f"Contact: <sip:{OWNER}@{LOOPBACK}:{phone.local_port}>",
                 "Event: message-summary", f"Expires: {expires}"],
            )  # fmt: skip

        phone.send(in_subscription(3, 300))
        refreshed = phone.receive()
        assert refreshed is not None and refreshed.status == 200
        assert refreshed.headers.get("Expires") == "300"
        assert "active" in (take_notify(phone).headers.get("Subscription-State") or "")

        phone.send(in_subscription(4, 0))
        ended = phone.receive()
        assert ended is not None and (ended.status, ended.headers.get("Expires")) == (200, "0")
        last = take_notify(phone)
        assert last.headers.get("Subscription-State") == "terminated"
        assert "Voice-Message: 2/1" in body_of(last)

        phone.send(in_subscription(5, 600))
        gone = phone.receive()
        assert gone is not None and gone.status == 481
    finally:
        phone.close()


def test_a_fetch_is_one_notify(mwi_server: IpbxServer) -> None:
    """Expires: 0 on a new SUBSCRIBE asks for the state once (RFC 6665 §4.4.3)."""
    phone = SipClient(mwi_server.port)
    try:
        ok = subscribe(phone, expires=0)
        assert ok is not None and (ok.status, ok.headers.get("Expires")) == (200, "0")
        notify = take_notify(phone)
        assert notify.headers.get("Subscription-State") == "terminated"
        assert "Voice-Message: 2/1 (0/0)" in body_of(notify)
    finally:
        phone.close()


@pytest.mark.parametrize(
    ("kw", "status", "header"),
    [
        ({"event": "conference"}, 489, ("Allow-Events", "message-summary, dialog, presence")),
        ({"user": OTHER}, 403, None),  # 1000 may not watch 1001's mailbox
        ({"password": "wrong"}, 407, None),  # challenged again
        ({"expires": 10}, 423, ("Min-Expires", "60")),
    ],
)
def test_refusals(
    mwi_server: IpbxServer, kw: dict[str, Any], status: int, header: tuple[str, str] | None
) -> None:
    phone = SipClient(mwi_server.port)
    try:
        answer = subscribe(phone, **kw)
        assert answer is not None and answer.status == status, answer
        if header is not None:
            assert answer.headers.get(header[0]) == header[1]
    finally:
        phone.close()


def test_without_credentials_a_subscribe_is_challenged(mwi_server: IpbxServer) -> None:
    phone = SipClient(mwi_server.port)
    try:
        phone.send(
            phone.message(
                "SUBSCRIBE", f"sip:{OWNER}@{LOOPBACK}", user=OWNER,
                headers=[f"Contact: <sip:{OWNER}@{LOOPBACK}:{phone.local_port}>",
                         "Event: message-summary"],
            )
        )  # fmt: skip
        challenge = phone.receive()
        assert challenge is not None and challenge.status == 407
        assert challenge.headers.get("Proxy-Authenticate")
    finally:
        phone.close()


# --- in process: notify() after a message is delivered ------------------------------------


async def in_process(tmp_path: Path) -> None:
    port = free_port("udp")
    extensions: list[dict[str, Any]] = [
        {"number": e.number, "password": e.password} for e in extension_range(3)
    ]
    extensions[1]["voicemail"] = {"pin": "1234"}
    config = Config.model_validate(
        {
            "data_dir": str(tmp_path / "data"),
            "sip": {"listen": [f"udp://{LOOPBACK}:{port}"], "realm": "ipbx"},
            "media": {"rtp_ports": "40000-40099"},
            "extensions": extensions,
        }
    )
    store = Store(config.store_url)
    store.migrate()
    store.apply_extensions([(e.number, e.name, e.password) for e in config.extensions], "ipbx")
    pbx = Pbx(config, store)
    await pbx.start()
    subscriber, desk = SipClient(port), SipClient(port)
    try:
        # One phone subscribes; another registers and never subscribes.
        ok = await asyncio.to_thread(subscribe, subscriber)
        assert ok is not None and ok.status == 200
        first = await asyncio.to_thread(take_notify, subscriber)
        assert "Messages-Waiting: no" in body_of(first)
        registered = await asyncio.to_thread(desk.register, OWNER, f"secret{OWNER}")
        assert registered is not None and registered.status == 200
        mailbox = pbx.mailboxes.get(OWNER)
        assert mailbox is not None
        recording = write_message_wav(mailbox.new_message_path(), 1.0)
        await mailbox.deliver(recording, "+15550100", 1.0)
        solicited = await asyncio.to_thread(take_notify, subscriber)
        assert solicited.call_id == ok.call_id
        assert "Voice-Message: 1/0 (0/0)" in body_of(solicited)
        unsolicited = await asyncio.to_thread(take_notify, desk)
        assert unsolicited.call_id != ok.call_id and unsolicited.to.tag is None
        assert unsolicited.headers.get("Event") == "message-summary"
        assert str(unsolicited.uri) == f"sip:{OWNER}@{LOOPBACK}:{desk.local_port}"
        assert body_of(unsolicited) == (
            "Messages-Waiting: yes\r\n"
            f"Message-Account: sip:{OWNER}@{LOOPBACK}\r\n"
            "Voice-Message: 1/0 (0/0)\r\n"
        )
        # Listening to it turns the lamp off.
        [message] = mailbox.messages("new")
        mailbox.mark_saved(message)
        after = await asyncio.to_thread(take_notify, subscriber)
        assert "Messages-Waiting: no" in body_of(after)
        assert "Voice-Message: 0/1 (0/0)" in body_of(after)
        # A subscriber that answers 481 has forgotten the subscription: it is dropped.
        mailbox.delete(mailbox.messages("saved")[0])
        stale = await asyncio.to_thread(next_request, subscriber, "NOTIFY")
        subscriber.send(reply_to(stale, 481, []))
        for _ in range(50):
            if not pbx.mwi.subscriptions(OWNER):
                break
            await asyncio.sleep(0.02)
        assert pbx.mwi.subscriptions(OWNER) == []
    finally:
        subscriber.close()
        desk.close()
        await pbx.stop()
        store.close()


def test_new_messages_are_notified_to_subscribers_and_registered_phones(tmp_path: Path) -> None:
    asyncio.run(asyncio.wait_for(in_process(tmp_path), 30))


def test_a_random_event_id_is_echoed(mwi_server: IpbxServer) -> None:
    """RFC 6665 §8.2.1: an Event id parameter comes back in the NOTIFY's Event."""
    phone = SipClient(mwi_server.port)
    try:
        tag = secrets.token_hex(3)
        ok = subscribe(phone, event=f"message-summary;id={tag}")
        assert ok is not None and ok.status == 200
        assert take_notify(phone).headers.get("Event") == f"message-summary;id={tag}"
    finally:
        phone.close()


def test_notify_goes_to_the_subscribers_contact_when_it_is_not_behind_nat(
    mwi_server: IpbxServer,
) -> None:
    """A phone that sends from one port and listens on another (its Via names the port it
    sends from: no NAT) gets its NOTIFYs at its Contact (RFC 6665 §4.1.2.1, RFC 3261 §12)."""
    phone = SipClient(mwi_server.port)
    listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    listener.bind((LOOPBACK, 0))
    listener.settimeout(5)
    try:
        ok = phone.request(
            "SUBSCRIBE", f"sip:{OWNER}@{LOOPBACK}:{phone.port}", user=OWNER,
            to=f"sip:{OWNER}@{LOOPBACK}", password=f"secret{OWNER}",
            headers=[
                f"Contact: <sip:{OWNER}@{LOOPBACK}:{listener.getsockname()[1]}>",
                "Event: message-summary", "Expires: 0", f"Accept: {SUMMARY}",
            ],
        )  # fmt: skip
        assert ok is not None and ok.status == 200, ok
        notify = listener.recv(65535)
        assert notify.startswith(b"NOTIFY "), notify
    finally:
        listener.close()
        phone.close()
