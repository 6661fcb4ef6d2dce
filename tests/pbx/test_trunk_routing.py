"""Calls through trunks against a real `ipbx serve`, with raw-SIP providers on
loopback (SipClient sockets) standing in for the trunks, so a test says exactly what a
provider answers: inbound by number, outbound by route with failover when a trunk is
down, at its channel limit or answers 503, and refusal of INVITEs from strangers. The
Kamailio/SIPp versions are in tests/interop/test_trunk_calls.py."""

from __future__ import annotations

import json
import secrets
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ipbx.sip.auth import authorization
from ipbx.sip.message import Response
from tests.support.records import call_records
from tests.support.server import CALLEE, CALLER, OTHER, IpbxServer
from tests.support.sipclient import LOOPBACK, SipClient, ack_for, in_dialog, next_request, reply_to
from tests.support.trunks import (
    CALLER_ID,
    DID,
    Gateway,
    gateways,
    ip_trunk,
    ipbx,
    offer,
    received,
    registered,
    routing,
)

DIALLED = "92125551234"
E164 = "+12125551234"
STRANGER = "127.0.0.2"  # no trunk's peer, no registered phone there


@dataclass
class Caller(SipClient):
    invite: bytes = b""  # the INVITE with credentials, for a CANCEL to copy


def call_out(server: IpbxServer, dialled: str = DIALLED, user: Any = CALLER) -> Caller:
    """Extension `user` INVITEs `dialled`, answering (and ACKing) ipbx's 407; the final
    answer is left to the test, which plays the provider meanwhile."""
    caller = Caller(server.port, timeout=5)
    uri = f"sip:{dialled}@{LOOPBACK}"
    headers = [
        f"Contact: <sip:{user.number}@{LOOPBACK}:{caller.local_port}>",
        "Content-Type: application/sdp",
    ]
    body = offer()
    call_id = secrets.token_hex(8)
    caller.send(caller.message("INVITE", uri, user=user.number, call_id=call_id,
                               headers=headers, body=body))  # fmt: skip
    challenge = final(caller)
    assert challenge.status == 407, challenge
    # Our ACK, or ipbx repeats the 407 (Timer G) into the answers the test waits for.
    caller.send(caller.ack_failure(challenge, uri))
    credentials = authorization(
        challenge.headers.get_all("Proxy-Authenticate")[0], "INVITE", uri, user.number,
        user.password,
    )  # fmt: skip
    caller.invite = caller.message(
        "INVITE", uri, user=user.number, call_id=call_id, cseq=2,
        headers=[*headers, f"Proxy-Authorization: {credentials}"], body=body,
    )  # fmt: skip
    caller.send(caller.invite)
    return caller


def final(client: SipClient) -> Response:
    response = client.receive()
    assert response is not None, "no final response"
    return response


def hang_up(caller: SipClient, ok: Response, gateway: Gateway) -> None:
    """The caller ACKs the 200 and hangs up; the BYE reaches the gateway's dialog."""
    caller.send(ack_for(ok, caller))
    dialog = (ok.contacts[0].uri, ok.headers.get("From"), ok.headers.get("To"), ok.call_id)
    caller.send(in_dialog(caller, "BYE", *map(str, dialog), 3))
    bye = next_request(gateway.client, "BYE")
    gateway.reply(bye, 200)
    assert final(caller).status == 200


def trunk_state(server: IpbxServer, name: str) -> dict[str, Any]:
    document = json.loads((server.data_dir / "trunks.json").read_text())
    [state] = [t for t in document["trunks"] if t["name"] == name]
    return dict(state)


def until_state(server: IpbxServer, name: str, key: str, value: object) -> None:
    deadline = time.monotonic() + 10
    while True:
        try:
            if trunk_state(server, name)[key] == value:
                return
        except (OSError, ValueError):
            pass
        assert time.monotonic() < deadline, f"trunk {name} never had {key}={value}"
        time.sleep(0.1)


# --- inbound ---------------------------------------------------------------------------------


def test_a_trunk_call_to_a_did_in_the_request_uri_rings_its_extension(tmp_path: Path) -> None:
    with gateways(2) as (gw1, gw2), ipbx(tmp_path, routing(ip_trunk(gw1), ip_trunk(gw2))) as server:
        gw2.attach(server)
        phone = registered(server, CALLEE.number, CALLEE.password)
        # The provider writes the DID nationally in the Request-URI, something else in To.
        contact = f"Contact: <sip:+12125550199@{LOOPBACK}:{gw2.port}>"
        gw2.client.send(
            gw2.client.message(
                "INVITE", f"sip:15550100@{LOOPBACK}:{server.port}", user="+12125550199",
                to=f"sip:trunk-account@{LOOPBACK}", call_id="did-1",
                headers=[contact, "Content-Type: application/sdp"], body=offer(),
            )
        )  # fmt: skip
        ring = next_request(phone, "INVITE")
        assert ring.uri.user == CALLEE.number
        assert ring.from_.uri.user == "+12125550199"
        phone.send(reply_to(ring, 200, [f"Contact: <sip:1001@{LOOPBACK}:{phone.local_port}>",
                                        "Content-Type: application/sdp"], offer()))  # fmt: skip
        ok = final(gw2.client)
        assert ok.status == 200
        hang_up_from = gw2.client
        hang_up_from.send(ack_for(ok, hang_up_from))
        dialog = (ok.contacts[0].uri, ok.headers.get("From"), ok.headers.get("To"), ok.call_id)
        hang_up_from.send(in_dialog(hang_up_from, "BYE", *map(str, dialog), 2))
        bye = next_request(phone, "BYE")
        phone.send(reply_to(bye, 200, []))
        assert final(gw2.client).status == 200
        [record] = call_records(server)
        assert (record.caller, record.callee, record.result) == ("+12125550199", DID, "answered")
        until_state(server, "provider2", "channels", 0)


def test_a_trunk_call_to_no_number_of_ours_or_an_absent_extension_is_refused(
    tmp_path: Path,
) -> None:
    with gateways(2) as (gw1, gw2), ipbx(tmp_path, routing(ip_trunk(gw1), ip_trunk(gw2))) as server:
        gw1.attach(server)
        uri = f"sip:+15559999@{LOOPBACK}:{server.port}"
        answer = gw1.client.request("INVITE", uri, user="+12125550199", body=offer(),
                                    headers=gw1.headers)  # fmt: skip
        assert answer is not None and answer.status == 404, answer
        # The DID is ours, but 1001 has no registered phone.
        uri = f"sip:{DID}@{LOOPBACK}:{server.port}"
        answer = gw1.client.request("INVITE", uri, user="+12125550199", body=offer(),
                                    headers=gw1.headers)  # fmt: skip
        assert answer is not None and answer.status == 480, answer
        until_state(server, "provider1", "channels", 0)


def test_a_provider_cancel_stops_the_ringing_and_frees_the_channel(tmp_path: Path) -> None:
    edit = routing(ip_trunk(gw := Gateway(), max_channels=1), {"host": f"{LOOPBACK}:9"})
    try:
        with ipbx(tmp_path, edit) as server:
            gw.attach(server)
            phone = registered(server, CALLEE.number, CALLEE.password)
            invite = gw.client.message(
                "INVITE", f"sip:{DID}@{LOOPBACK}:{server.port}", user="+12125550199",
                call_id="did-cancel", headers=gw.headers, body=offer(),
            )  # fmt: skip
            gw.client.send(invite)
            ring = next_request(phone, "INVITE")
            phone.send(reply_to(ring, 180, []))
            until_state(server, "provider1", "channels", 1)
            cancel = invite.replace(b"INVITE sip:", b"CANCEL sip:", 1).replace(
                b"1 INVITE", b"1 CANCEL"
            )
            cancel = cancel.split(b"Content-Type")[0] + b"Content-Length: 0\r\n\r\n"
            gw.client.send(cancel)
            statuses = {final(gw.client).status, final(gw.client).status}
            assert statuses == {200, 487}, statuses
            phone_cancel = next_request(phone, "CANCEL")
            phone.send(reply_to(phone_cancel, 200, []))
            phone.send(reply_to(ring, 487, []))
            until_state(server, "provider1", "channels", 0)
            [record] = call_records(server)
            assert (record.caller, record.callee, record.result) == (
                "+12125550199", DID, "cancelled",
            )  # fmt: skip
    finally:
        gw.close()


# --- outbound and failover ---------------------------------------------------------------------


def test_a_call_out_goes_through_the_first_trunk_with_caller_id_and_e164(tmp_path: Path) -> None:
    with (
        gateways(2) as (gw1, gw2),
        ipbx(tmp_path, routing(ip_trunk(gw1, pai=True), ip_trunk(gw2))) as server,
    ):
        gw1.attach(server)
        caller = call_out(server)
        invite = gw1.invite()
        assert str(invite.uri) == f"sip:{E164}@{LOOPBACK}:{gw1.port}"
        assert invite.from_.uri.user == CALLER_ID
        assert (
            invite.headers.get("P-Asserted-Identity") == f"<sip:{CALLER_ID}@{LOOPBACK}:{gw1.port}>"
        )
        assert invite.to.uri.user == E164
        gw1.answer(invite)
        ok = final(caller)
        assert ok.status == 200
        hang_up(caller, ok, gw1)
        assert gw2.nothing(0.2) == []
        [record] = call_records(server)
        assert (record.caller, record.callee, record.result) == (CALLER.number, DIALLED, "answered")


def test_a_call_out_fails_over_when_the_first_trunk_answers_503(tmp_path: Path) -> None:
    with gateways(2) as (gw1, gw2), ipbx(tmp_path, routing(ip_trunk(gw1), ip_trunk(gw2))) as server:
        gw1.attach(server)
        gw2.attach(server)
        caller = call_out(server)
        first = gw1.invite()
        gw1.reply(first, 503, ["Retry-After: 60"])
        assert next_request(gw1.client, "ACK").call_id == first.call_id
        second = gw2.invite()
        assert str(second.uri) == f"sip:{E164}@{LOOPBACK}:{gw2.port}"
        assert second.call_id != first.call_id  # a new dialog, not a merged request
        gw2.answer(second)
        ok = final(caller)
        assert ok.status == 200
        hang_up(caller, ok, gw2)
        [record] = call_records(server)
        assert (record.caller, record.callee, record.result) == (CALLER.number, DIALLED, "answered")
        assert record.legs[1].peer == f"UDP:{LOOPBACK}:{gw2.port}"
        until_state(server, "provider1", "channels", 0)
        until_state(server, "provider2", "channels", 0)


def test_a_call_out_fails_over_when_the_first_trunk_is_at_its_channel_limit(
    tmp_path: Path,
) -> None:
    edit = routing(ip_trunk(gw1 := Gateway(), max_channels=1), ip_trunk(gw2 := Gateway()))
    try:
        with ipbx(tmp_path, edit) as server:
            gw1.attach(server)
            gw2.attach(server)
            first_caller = call_out(server)
            gw1.answer(gw1.invite())
            first = final(first_caller)
            assert first.status == 200
            first_caller.send(ack_for(first, first_caller))
            until_state(server, "provider1", "channels", 1)
            assert trunk_state(server, "provider1")["available"] is False
            # provider1 holds one call and sells one channel: the next call uses provider2.
            second_caller = call_out(server, user=OTHER)
            gw2.answer(gw2.invite())
            second = final(second_caller)
            assert second.status == 200
            assert gw1.nothing(0.2) == []
            hang_up(second_caller, second, gw2)
            [record] = call_records(server)
            assert (record.caller, record.result) == (OTHER.number, "answered")
            assert record.legs[1].peer == f"UDP:{LOOPBACK}:{gw2.port}"
    finally:
        gw1.close()
        gw2.close()


def test_a_call_out_fails_over_when_the_first_trunks_registration_failed(tmp_path: Path) -> None:
    # provider1 registers to a socket that never answers: failed after 64*T1.
    silent = Gateway()
    provider1 = {"host": f"{LOOPBACK}:{silent.port}", "username": "ipbx",
                 "password": "trunksecret", "register": True, "retry_interval": 30}  # fmt: skip
    try:
        with gateways(1) as (gw2,), ipbx(tmp_path, routing(provider1, ip_trunk(gw2))) as server:
            gw2.attach(server)
            until_state(server, "provider1", "registration", "failed")
            caller = call_out(server)
            gw2.answer(gw2.invite())
            ok = final(caller)
            assert ok.status == 200
            hang_up(caller, ok, gw2)
            invites = [m for m in silent.client.sock.recv(65535).split(b"\r\n")[:1]]
            assert invites and invites[0].startswith(b"REGISTER "), invites
            [record] = call_records(server)
            assert record.result == "answered"
    finally:
        silent.close()


def test_when_every_trunk_refuses_the_caller_hears_why_and_the_record_says_so(
    tmp_path: Path,
) -> None:
    with gateways(2) as (gw1, gw2), ipbx(tmp_path, routing(ip_trunk(gw1), ip_trunk(gw2))) as server:
        gw1.attach(server)
        gw2.attach(server)
        caller = call_out(server)
        gw1.reply(gw1.invite(), 503)
        gw2.reply(gw2.invite(), 486)
        assert final(caller).status == 486
        [record] = call_records(server)
        assert (record.caller, record.callee, record.result) == (CALLER.number, DIALLED, "busy")


def test_an_extension_without_the_routes_permission_does_not_reach_a_trunk(
    tmp_path: Path,
) -> None:
    edit = routing(ip_trunk(gw1 := Gateway()), ip_trunk(gw2 := Gateway()), permission="internal")
    try:
        with ipbx(tmp_path, edit) as server:
            caller = SipClient(server.port, timeout=5)
            answer = caller.request(
                "INVITE", f"sip:{DIALLED}@{LOOPBACK}", user=CALLER.number,
                password=CALLER.password, body=offer(),
                headers=[f"Contact: <sip:1000@{LOOPBACK}:{caller.local_port}>",
                         "Content-Type: application/sdp"],
            )  # fmt: skip
            assert answer is not None and answer.status == 403, answer
            assert gw1.nothing(0.2) == [] and gw2.nothing(0.1) == []
    finally:
        gw1.close()
        gw2.close()


# --- strangers ---------------------------------------------------------------------------------


def test_an_invite_from_no_trunk_and_no_phone_is_refused_logged_and_rings_nobody(
    tmp_path: Path,
) -> None:
    with gateways(2) as (gw1, gw2), ipbx(tmp_path, routing(ip_trunk(gw1), ip_trunk(gw2))) as server:
        phone = registered(server, CALLEE.number, CALLEE.password)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind((STRANGER, 0))
            sock.settimeout(5)
            port = sock.getsockname()[1]
            statuses = []
            for target in (CALLEE.number, DID, DIALLED):
                stranger = SipClient(server.port)
                request = stranger.message(
                    "INVITE", f"sip:{target}@{LOOPBACK}:{server.port}", user="+12125550199",
                    headers=[f"Contact: <sip:+12125550199@{LOOPBACK}:{stranger.local_port}>",
                             "Content-Type: application/sdp"], body=offer(),
                )  # fmt: skip
                request = request.replace(
                    f"{LOOPBACK}:{stranger.local_port}".encode(), f"{STRANGER}:{port}".encode()
                )
                stranger.close()
                sock.sendto(request, (LOOPBACK, server.port))
                while True:
                    data = sock.recv(65535)
                    status = int(data.split(b" ", 2)[1])
                    if status >= 200:
                        break
                statuses.append(status)
        assert statuses == [407, 407, 407]
        assert not any(m.startswith(b"INVITE") for m in received(phone, 0.5))
        assert gw1.nothing(0.1) == [] and gw2.nothing(0.1) == []
        log = (server.workdir / "ipbx.log").read_text()
        refused = [line for line in log.splitlines() if "no trunk peer or registered phone" in line]
        assert len(refused) == 3, refused
        assert all(f"{STRANGER}:{port}" in line for line in refused), refused


def test_a_call_out_fails_over_when_the_first_trunk_never_answers(tmp_path: Path) -> None:
    with gateways(2) as (gw1, gw2), ipbx(tmp_path, routing(ip_trunk(gw1), ip_trunk(gw2))) as server:
        gw2.attach(server)
        caller = call_out(server)
        silent = gw1.invite()
        started = time.monotonic()
        # Timer B (64*T1 = 3.2 s here) ends the attempt as a 408: the next trunk is tried.
        second = gw2.invite()
        assert time.monotonic() - started > 2.5
        assert second.uri.user == E164 and silent.uri.user == E164
        gw2.answer(second)
        ok = final(caller)
        assert ok.status == 200
        hang_up(caller, ok, gw2)


def test_a_provider_that_refuses_the_trunks_credentials_is_failed_over(tmp_path: Path) -> None:
    challenge = 'Proxy-Authenticate: Digest realm="provider.test", nonce="abc123", algorithm=MD5'
    with gateways(2) as (gw1, gw2), ipbx(tmp_path, routing(
        ip_trunk(gw1, username="ipbx", password="wrong"), ip_trunk(gw2)
    )) as server:  # fmt: skip
        gw1.attach(server)
        gw2.attach(server)
        caller = call_out(server)
        first = gw1.invite()
        gw1.reply(first, 407, [challenge])
        again = gw1.invite()
        credentials = again.headers.get("Proxy-Authorization") or ""
        assert 'username="ipbx"' in credentials and f'uri="{again.uri}"' in credentials
        assert again.cseq.number == first.cseq.number + 1 and again.call_id == first.call_id
        gw1.reply(again, 407, [challenge])  # the password is wrong: challenged again
        second = gw2.invite()
        gw2.answer(second)
        ok = final(caller)
        assert ok.status == 200, ok
        hang_up(caller, ok, gw2)


def test_a_caller_who_gives_up_cancels_the_trunk_attempt_and_frees_its_channel(
    tmp_path: Path,
) -> None:
    with gateways(2) as (gw1, gw2), ipbx(
        tmp_path, routing(ip_trunk(gw1, max_channels=1), ip_trunk(gw2))
    ) as server:  # fmt: skip
        gw1.attach(server)
        caller = call_out(server)
        invite = gw1.invite()
        gw1.reply(invite, 180)
        until_state(server, "provider1", "channels", 1)
        raw = [m for m in received(caller, 0.3) if m.startswith(b"SIP/2.0 180")]
        assert raw, "the trunk's ringing did not reach the caller"
        # CANCEL the INVITE with credentials (CSeq 2, the branch of that request).
        sent = caller.invite
        cancel = sent.replace(b"INVITE sip:", b"CANCEL sip:", 1).replace(b"2 INVITE", b"2 CANCEL")
        cancel = cancel.split(b"Proxy-Authorization")[0] + b"Content-Length: 0\r\n\r\n"
        caller.send(cancel)
        gw_cancel = next_request(gw1.client, "CANCEL")
        gw1.reply(gw_cancel, 200)
        gw1.reply(invite, 487)
        assert final(caller).status in (200, 487)
        until_state(server, "provider1", "channels", 0)
        [record] = call_records(server)
        assert (record.caller, record.callee, record.result) == (
            CALLER.number, DIALLED, "cancelled",
        )  # fmt: skip


def test_a_trunk_at_its_channel_limit_refuses_another_inbound_call(tmp_path: Path) -> None:
    with gateways(2) as (gw1, gw2), ipbx(
        tmp_path, routing(ip_trunk(gw1, max_channels=1), ip_trunk(gw2))
    ) as server:  # fmt: skip
        gw1.attach(server)
        phone = registered(server, CALLEE.number, CALLEE.password)
        gw1.client.send(gw1.client.message(
            "INVITE", f"sip:{DID}@{LOOPBACK}:{server.port}", user="+12125550199",
            headers=gw1.headers, body=offer(),
        ))  # fmt: skip
        next_request(phone, "INVITE")
        until_state(server, "provider1", "channels", 1)
        answer = gw1.client.request(
            "INVITE", f"sip:{DID}@{LOOPBACK}:{server.port}", user="+12125550177",
            headers=gw1.headers, body=offer(),
        )  # fmt: skip
        assert answer is not None and answer.status == 503, answer


def test_a_did_forwarded_to_an_outside_number_leaves_through_a_route(tmp_path: Path) -> None:
    def edit(config: dict[str, Any]) -> None:
        routing(ip_trunk(gw1), ip_trunk(gw2))(config)
        config["numbers"].append({"number": "+15550102", "destination": f"number:{E164}"})
        config["outbound_routes"].append(
            {"name": "e164", "pattern": "_+1NXXNXXXXXX", "trunks": ["provider2"]}
        )

    with gateways(2) as (gw1, gw2), ipbx(tmp_path, edit) as server:
        gw1.attach(server)
        gw2.attach(server)
        gw1.client.send(gw1.client.message(
            "INVITE", f"sip:+15550102@{LOOPBACK}:{server.port}", user="+12125550199",
            headers=gw1.headers, body=offer(),
        ))  # fmt: skip
        out = gw2.invite()
        assert str(out.uri) == f"sip:{E164}@{LOOPBACK}:{gw2.port}"
        assert out.from_.uri.user == "+12125550199"  # the original caller's number
        gw2.answer(out)
        ok = final(gw1.client)
        assert ok.status == 200
        hang_up(gw1.client, ok, gw2)
        [record] = call_records(server)
        assert (record.caller, record.callee, record.result) == (
            "+12125550199", "+15550102", "answered",
        )  # fmt: skip


def test_an_invite_without_contact_is_refused_before_any_phone_rings(tmp_path: Path) -> None:
    """RFC 3261 §8.1.1.8: the Contact is where the caller's dialog goes. Without it the
    callee used to be answered and connected to a caller who never got the 200."""
    with gateways(2) as (gw1, gw2), ipbx(tmp_path, routing(ip_trunk(gw1), ip_trunk(gw2))) as server:
        gw1.attach(server)
        phone = registered(server, CALLEE.number, CALLEE.password)
        answer = gw1.client.request(
            "INVITE", f"sip:{DID}@{LOOPBACK}:{server.port}", user="+12125550199",
            headers=["Content-Type: application/sdp"], body=offer(), add_contact=False,
        )  # fmt: skip
        assert answer is not None and answer.status == 400, answer
        assert not any(m.startswith(b"INVITE") for m in received(phone, 0.3))
        until_state(server, "provider1", "channels", 0)


def test_without_a_route_caller_id_the_extension_shows_its_own(tmp_path: Path) -> None:
    own = "+15550777"
    base = routing(ip_trunk(gw1 := Gateway()), ip_trunk(gw2 := Gateway()), caller_id=own)

    def edit(config: dict[str, Any]) -> None:
        base(config)
        del config["outbound_routes"][0]["caller_id"]

    try:
        with ipbx(tmp_path, edit) as server:
            gw1.attach(server)
            caller = call_out(server)
            invite = gw1.invite()
            assert invite.from_.uri.user == own
            gw1.answer(invite)
            ok = final(caller)
            assert ok.status == 200
            hang_up(caller, ok, gw1)
    finally:
        gw1.close()
        gw2.close()
