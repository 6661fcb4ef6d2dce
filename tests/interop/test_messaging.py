"""Interop: text messages (SIP MESSAGE, RFC 3428) with real peers. SIPp sends as
extension 1000 (digest-challenged like an INVITE), and so does baresip (its `/message`
command to its current contact); another baresip is extension 1001's phone,
and SIPp is the provider's SMS gateway on an IP trunk with `messaging: true`: it
challenges ipbx's MESSAGE (407, answered with the trunk's account) and sends one from a
mobile to a DID of 1001. Extension 1002 has no phone: its message is stored (202)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import httpx

from ipbx.store import MessageRecord, Store
from tests.support.baresip import (
    BARESIP_MODULES,
    baresip_tone,
    start_baresip,
    wait_registered,
)
from tests.support.ports import LOOPBACK, free_port
from tests.support.processes import stop_process
from tests.support.server import (
    CALLEE,
    CALLER,
    OTHER,
    IpbxServer,
    make_token,
    start_configured_ipbx,
)
from tests.support.sipp import run_sipp, start_sipp, write_users_csv
from tests.support.webhook_receiver import Receiver

SCENARIOS = Path(__file__).parent / "scenarios"
MOBILE = "+12125551234"
DID = "+12125550100"
RUSSIAN = "Привет из SIPp"
ARABIC = "مرحبا من الهاتف"
FROM_BARESIP = "Привет от baresip"
FROM_API = "Сообщение через API"
SECRET = "s3cret-for-the-crm-0123"


def sms_trunk(gateway: int, api_port: int, webhook: str) -> Any:
    def edit(config: dict[str, Any]) -> None:
        config["country"] = "US"
        config["trunks"] = [
            {"name": "sms", "host": f"{LOOPBACK}:{gateway}",
             "allow_from": [f"{LOOPBACK}:{gateway}"], "options_interval": 0, "messaging": True,
             "username": "trunkuser", "password": "trunksecret"}
        ]  # fmt: skip
        config["outbound_routes"] = [
            {"name": "e164", "pattern": "_+1NXXNXXXXXX", "trunks": ["sms"]}
        ]
        config["numbers"] = [{"number": DID, "destination": f"extension:{CALLEE.number}"}]
        config["api"] = {"listen": f"{LOOPBACK}:{api_port}"}
        config["webhooks"] = [{"url": webhook, "events": ["message.*"], "secret": SECRET}]

    return edit


def baresip_sends(workdir: Path, server: IpbxServer, to: str, text: str) -> str:
    """baresip as extension 1000, not registered, sends `text` to `to` with its
    `/message` command (to its current contact, the only one) and quits; its SIP trace."""
    config_dir = workdir / "baresip-sender"
    config_dir.mkdir(parents=True)
    (config_dir / "config").write_text(
        f"sip_listen {LOOPBACK}:0\nnet_interface {LOOPBACK}\naudio_player alsa,null\n"
        f"module_path {BARESIP_MODULES}\nmodule g711.so\nmodule_app account.so\n"
        "module_app contact.so\nmodule_app menu.so\n"
    )
    registrar = f"{LOOPBACK}:{server.port}"
    (config_dir / "accounts").write_text(
        f"<sip:{CALLER.number}@{registrar}>;auth_pass={CALLER.password};regint=0\n"
    )
    (config_dir / "contacts").write_text(f"<sip:{to}@{registrar}>\n")
    done = subprocess.run(
        ["baresip", "-f", str(config_dir), "-t", "4", "-s", "-e", f"/message {text}"],
        capture_output=True, timeout=30, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    return done.stdout.decode(errors="replace")


def messages(server: IpbxServer, count: int, timeout: float = 10.0) -> list[MessageRecord]:
    """The server's messages, oldest first, once `count` of them are settled (not
    pending, but for the one to the extension with no phone)."""
    store = Store(f"sqlite:///{server.data_dir / 'ipbx.db'}")
    try:
        deadline = time.monotonic() + timeout
        while True:
            _, found = store.list_messages(limit=100)
            settled = [m for m in found if m.status != "pending" or m.recipient == OTHER.number]
            if len(settled) >= count or time.monotonic() > deadline:
                return list(reversed(found))
            time.sleep(0.1)
    finally:
        store.close()


def test_messages_between_sipp_baresip_and_a_provider(tmp_path: Path) -> None:
    gateway_port, api_port = free_port("udp"), free_port("tcp")
    receiver = Receiver(free_port("tcp"), SECRET).start()
    gateway = start_sipp(
        SCENARIOS / "uas_message_provider.xml", None, "-trace_msg", "-message_file",
        str(tmp_path / "gateway" / "gateway.messages.log"),
        calls=1, workdir=tmp_path / "gateway", local_port=gateway_port, timeout=40,
        name="gateway",
    )  # fmt: skip
    server = start_configured_ipbx(
        tmp_path / "ipbx", sms_trunk(gateway_port, api_port, receiver.url)
    )
    phone = start_baresip(
        tmp_path, registrar_port=server.port, user=CALLEE,
        audio_file=baresip_tone(tmp_path / "tone.wav", 440, 1, "PCMU"), seconds=40,
        sip_trace=True,
    )  # fmt: skip
    users = write_users_csv(tmp_path / "users.csv", [CALLER])
    try:
        wait_registered(server, CALLEE.number)
        target = f"{LOOPBACK}:{server.port}"

        def send_as_1000(to: str) -> None:
            sent = run_sipp(
                SCENARIOS / "uac_message.xml", target, "-inf", str(users), "-key", "target", to,
                calls=1, workdir=tmp_path / f"to-{to}", timeout=20,
            )  # fmt: skip
            assert sent.successful == 1, sent.errors()

        send_as_1000(CALLEE.number)  # delivered to baresip: 200
        send_as_1000(MOBILE)  # through the provider, which challenges: 200
        send_as_1000(OTHER.number)  # no phone: stored, 202
        trace = baresip_sends(tmp_path, server, CALLEE.number, FROM_BARESIP)
        assert "SIP/2.0 407" in trace and "SIP/2.0 200 OK" in trace, trace[-3000:]
        provider = gateway.finish(20)
        assert provider.successful == 1, provider.errors()
        from_mobile = run_sipp(
            SCENARIOS / "uac_message_did.xml", target, "-key", "did", DID,
            calls=1, workdir=tmp_path / "from-mobile", local_port=gateway_port, timeout=20,
        )  # fmt: skip
        assert from_mobile.successful == 1, from_mobile.errors()

        records = messages(server, 5)
        assert [(m.direction, m.sender, m.recipient, m.status, m.trunk) for m in records] == [
            ("internal", CALLER.number, CALLEE.number, "delivered", None),
            ("outbound", CALLER.number, MOBILE, "delivered", "sms"),
            ("internal", CALLER.number, OTHER.number, "pending", None),
            ("internal", CALLER.number, CALLEE.number, "delivered", None),
            ("inbound", MOBILE, CALLEE.number, "delivered", "sms"),
        ], server.log_tail(60)
        assert RUSSIAN in records[0].body and ARABIC in records[4].body
        assert records[3].body == FROM_BARESIP
        # The three MESSAGEs baresip 1001 took, in its SIP trace.
        shown = (tmp_path / f"baresip-{CALLEE.number}.log").read_text(errors="replace")
        assert all(text in shown for text in (RUSSIAN, FROM_BARESIP, ARABIC)), shown[-3000:]
        got = (tmp_path / "gateway" / "gateway.messages.log").read_text(errors="replace")
        assert f"MESSAGE sip:{MOBILE}@" in got and RUSSIAN in got

        # The API sends as 1000 to baresip 1001 and lists what 1001 sent and received.
        api = f"http://{LOOPBACK}:{api_port}"
        headers = {"Authorization": f"Bearer {make_token(server.config_path, 'admin')}"}
        sent = httpx.post(
            f"{api}/messages", json={"from": CALLER.number, "to": CALLEE.number, "text": FROM_API},
            headers=headers, timeout=10,
        )  # fmt: skip
        assert sent.status_code == 202, sent.text
        assert messages(server, 6)[-1].status == "delivered"
        listed = httpx.get(
            f"{api}/messages", params={"extension": CALLEE.number}, headers=headers, timeout=10
        ).json()
        assert [m["text"] for m in listed["items"]][:1] == [FROM_API]
        assert listed["total"] == 4  # SIPp's, baresip's, the mobile's and the API's
        # Webhooks: each message for an extension arrived, then its status.
        deadline = time.monotonic() + 10
        while len(receiver.events) < 10 and time.monotonic() < deadline:
            time.sleep(0.05)
        delivered: list[dict[str, Any]] = list(receiver.events.values())
        kinds = [(e["type"], e["data"]["status"]) for e in delivered]
        assert kinds.count(("message.received", "pending")) == 5, kinds
        assert kinds.count(("message.status", "delivered")) == 5, kinds

        # Refused before anything is stored: a content type not taken, then a flood
        # (everything here comes from 127.0.0.1, so this goes last).
        def refused(ctype: str, count: int) -> str:
            workdir = tmp_path / f"refused-{count}"
            result = run_sipp(
                SCENARIOS / "uac_message_refused.xml", target, "-key", "ctype", ctype,
                "-key", "target", CALLEE.number, "-r", "200", "-trace_msg",
                "-message_file", str(workdir / "refused.messages.log"),
                calls=count, workdir=workdir, timeout=20,
            )  # fmt: skip
            assert result.successful == count, result.errors()
            return (workdir / "refused.messages.log").read_text(errors="replace")

        assert "SIP/2.0 415" in refused("text/html", 1)
        flood = refused("text/plain", 60)
        assert "SIP/2.0 407" in flood and "SIP/2.0 503" in flood
        assert "Retry-After: 10" in flood
        assert len(messages(server, 6, timeout=0)) == 6
    finally:
        receiver.stop()
        stop_process(phone)
        server.stop()
        if gateway.process.poll() is None:
            stop_process(gateway.process)
        print(f"--- ipbx log tail\n{server.log_tail(60)}")
