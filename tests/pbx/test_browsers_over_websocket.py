"""Browsers over SIP over WebSocket (RFC 7118), against a running `ipbx serve` with ws://
and wss:// listeners: the handshake needs the `sip` subprotocol and a page of the server's
own host (or no page, as baresip), 403 otherwise; a browser registers with
digest, is called by a phone on UDP, calls `ipbx phone` over wss; its binding goes when
its connection does (the browser has no other address: its Contact is under `.invalid`)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect
from websockets.typing import Origin, Subprotocol

from ipbx.sip.message import Request
from tests.support.browser import Browser
from tests.support.ports import free_port
from tests.support.server import IpbxServer, extension_range, start_ipbx
from tests.support.sipclient import (
    LOOPBACK,
    SipClient,
    ack_for,
    failure_ack,
    next_request,
    reply_to,
    send_authenticated_invite,
)
from tests.support.softphone import ipbx_phone

SDP = (
    "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n"
)
# A browser's answer to a WebRTC offer (its ICE and DTLS side; no media flows in
# these tests).
WEBRTC_ANSWER = (
    "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "a=group:BUNDLE 0\r\nm=audio {port} UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\n"
    "a=rtpmap:0 PCMU/8000\r\na=ice-ufrag:brws\r\na=ice-pwd:browserpasswordof22chars\r\n"
    f"a=fingerprint:sha-256 {':'.join(['AB'] * 32)}\r\na=setup:active\r\n"
    "a=rtcp-mux\r\na=sendrecv\r\n"
)
SDP_TYPE = ["Content-Type: application/sdp"]


class Listeners:
    def __init__(self, server: IpbxServer, ws: int, wss: int) -> None:
        self.server = server
        self.ws = f"ws://{LOOPBACK}:{ws}"
        self.wss = f"wss://{LOOPBACK}:{wss}"


@pytest.fixture(scope="module")
def pbx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Listeners]:
    ws, wss = free_port("tcp"), free_port("tcp")
    server = start_ipbx(
        tmp_path_factory.mktemp("ipbx-ws"),
        extension_range(2),
        rtp_ports=40,
        listen=[f"ws://{LOOPBACK}:{ws}", f"wss://{LOOPBACK}:{wss}"],
    )
    yield Listeners(server, ws, wss)
    alive = server.process.poll() is None
    server.stop()
    assert alive, f"the server died during the tests:\n{server.log_tail()}"


def sdp(port: int) -> bytes:
    return SDP.format(port=port).encode()


def answer(request: Request, contact: str, port: int) -> bytes:
    """The browser answers ipbx's WebRTC offer."""
    extra = [f"Contact: {contact}", *SDP_TYPE]
    return reply_to(request, 200, extra, WEBRTC_ANSWER.format(port=port).encode())


def callee_side(invite: Request) -> tuple[str, str]:
    """(From, To) of the callee's own requests in the dialog `invite` started, once
    answered by `reply_to` (which tags the To `callee`)."""
    return f"{invite.headers.get('To')};tag=callee", invite.headers.get("From") or ""


def test_a_handshake_without_the_sip_subprotocol_is_refused(pbx: Listeners) -> None:
    with pytest.raises(InvalidStatus) as refused:
        connect(pbx.ws, open_timeout=15)
    assert refused.value.response.status_code == 400


def test_a_page_of_another_site_may_not_open_a_sip_websocket(pbx: Listeners) -> None:
    sip = [Subprotocol("sip")]
    with pytest.raises(InvalidStatus) as refused:
        connect(pbx.ws, origin=Origin("https://elsewhere.example"), subprotocols=sip)
    assert refused.value.response.status_code == 403
    own = Origin(f"http://{LOOPBACK}:8080")  # the web pages, on the API's port
    with connect(pbx.ws, origin=own, subprotocols=sip, open_timeout=15) as websocket:
        assert websocket.subprotocol == "sip"


def test_a_browser_registers_is_called_from_udp_and_is_gone_with_its_connection(
    pbx: Listeners,
) -> None:
    with Browser(pbx.ws, "1000", "secret1000") as browser:
        # A Content-Length is honoured when present: one past the message is a 400, and the
        # connection stays, its message boundaries intact.
        options = browser.message("OPTIONS", f"sip:{LOOPBACK}", call_id="cl", cseq=1)
        browser.send(options.replace(b"Content-Length: 0", b"Content-Length: 50"))
        assert browser.final().status == 400
        registered = browser.register()
        assert registered.status == 200
        # `received` on a Via whose sent-by is a made-up .invalid name (RFC 7118 §5.3).
        assert f"received={LOOPBACK}" in (registered.headers.get("Via") or "")
        (contact,) = registered.contacts
        assert contact.uri.host == browser.host
        assert registered.headers.get("Require") == "outbound"  # its WebSocket is its flow
        browser.websocket.send("\r\n\r\n")  # a keep-alive ping (RFC 5626 §4.4.1)
        assert browser.websocket.recv(3) == "\r\n"

        phone = SipClient(pbx.server.port)
        uri = f"sip:1000@{LOOPBACK}:{pbx.server.port}"
        send_authenticated_invite(
            phone, uri, SDP_TYPE, sdp(4000), user="1001", password="secret1001"
        )
        invite = browser.next_request("INVITE")
        assert invite.via.transport == "WS"
        ours = invite.contacts[0].uri
        assert ours.transport == "ws"
        # The UDP phone's plain RTP offer reaches the browser as WebRTC.
        assert b"m=audio" in invite.body and b"UDP/TLS/RTP/SAVPF" in invite.body
        assert b"a=setup:actpass" in invite.body and b"a=ice-lite" in invite.body
        browser.send(answer(invite, browser.contact, 4002))
        ok = phone.receive()
        assert ok is not None and ok.status == 200
        phone.send(ack_for(ok, phone))
        browser.next_request("ACK")

        local, remote = callee_side(invite)
        bye = browser.message(
            "BYE", str(ours), call_id=invite.call_id, cseq=1, from_=local, to=remote
        )
        browser.send(bye)
        phone.send(reply_to(next_request(phone, "BYE"), 200, []))
        assert browser.final().status == 200

        # Plain RTP is no answer to a WebRTC offer (RFC 3264 §6): the caller gets 488,
        # the browser its ACK and a BYE.
        send_authenticated_invite(
            phone, uri, SDP_TYPE, sdp(4000), user="1001", password="secret1001"
        )
        invite = browser.next_request("INVITE")
        browser.send(reply_to(invite, 200, [f"Contact: {browser.contact}", *SDP_TYPE], sdp(4002)))
        refused = phone.receive()
        assert refused is not None and refused.status == 488
        phone.send(failure_ack(refused, uri))
        browser.next_request("ACK")
        browser.send(reply_to(browser.next_request("BYE"), 200, []))

        # The tab closes: nothing else reaches it, so the next call finds no contact at once.
        browser.close()
        send_authenticated_invite(
            phone, uri, SDP_TYPE, sdp(4000), user="1001", password="secret1001"
        )
        refused = phone.receive()
        assert refused is not None and refused.status == 480
    assert "lost its contact" in pbx.server.log_path.read_text()


def test_a_browser_over_wss_calls_ipbx_phone_on_udp_which_hangs_up(
    pbx: Listeners, tmp_path: Path
) -> None:
    callee = extension_range(2)[1]
    args = ("--register", "--answer", "--duration", "1", "--timeout", "15")
    with ipbx_phone(tmp_path, pbx.server.port, callee, *args) as phone, ExitStack() as stack:
        phone.wait_for("registered as")
        browser = stack.enter_context(Browser(pbx.wss, "1000", "secret1000"))
        assert browser.register().status == 200
        assert browser.send_authenticated("INVITE", f"sip:1001@{LOOPBACK}", body=sdp(4010)) is None
        ok = browser.final()
        assert ok.status == 200
        target = ok.contacts[0].uri
        assert (target.transport, target.host) == ("ws", LOOPBACK)
        from_, to = ok.headers.get("From"), ok.headers.get("To")
        ack = browser.message("ACK", str(target), call_id=ok.call_id, cseq=2, from_=from_, to=to)
        browser.send(ack)
        bye = browser.next_request("BYE", timeout=5)
        assert bye.via.transport == "WSS"
        browser.send(reply_to(bye, 200, []))
        status, out = phone.finish(15)
    assert (status, out.splitlines()[-1]) == (0, "result: answered"), phone.log
