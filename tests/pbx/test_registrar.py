"""The registrar and simple call routing, seen from a phone on loopback (RFC 3261 §10)."""

from __future__ import annotations

import socket
import struct
import time
from pathlib import Path

import pytest

from ipbx.sip.message import Request, Response, parse_datagram
from tests.support.ports import free_port, free_udp_range
from tests.support.server import IpbxServer, run_ipbx
from tests.support.sipclient import LOOPBACK, SipClient, send_authenticated_invite

SDP = (
    "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio {port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n"
    "a=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n"
)


def launch(workdir: Path, port: int, listen: str, sip_extra: str = "") -> IpbxServer:
    """Run `ipbx serve` with extensions 1000 and 1001 on the given listeners and extra
    `sip:` settings (TLS, IPv6, timers ...); `port` is the UDP port to probe."""
    first, last = free_udp_range(10)
    config_path = workdir / "ipbx.yaml"
    config_path.write_text(
        f"data_dir: {workdir / 'data'}\n"
        f"sip:\n  listen: [{listen}]\n{sip_extra}"
        f"media:\n  address: {LOOPBACK}\n  rtp_ports: {first}-{last}\n"
        "extensions:\n"
        '  - {number: "1000", name: Alice, password: secret1000}\n'
        '  - {number: "1001", name: Bob, password: secret1001}\n'
    )
    return run_ipbx(workdir, config_path, port)


def _client(server: IpbxServer, transport: str = "udp") -> SipClient:
    return SipClient(server.port, transport=transport)


def test_register_is_challenged_then_bound(server: IpbxServer) -> None:
    phone = _client(server)
    first = phone.request(
        "REGISTER", f"sip:{LOOPBACK}", headers=[f"Contact: <sip:1000@{LOOPBACK}:5999>"]
    )
    assert first is not None and first.status == 401
    (challenge,) = first.headers.get_all("WWW-Authenticate")
    assert "algorithm=MD5" in challenge  # MD5 alone by default: see sip.digest_algorithms
    ok = phone.register("1000", "secret1000", expires=600, contact_port=5999)
    assert ok is not None and ok.status == 200
    (contact,) = ok.contacts
    assert contact.uri.port == 5999
    assert 590 <= int(contact.params["expires"] or 0) <= 600
    assert ok.headers.get("Date")


def test_wrong_password_and_unknown_user_look_the_same(server: IpbxServer) -> None:
    phone = _client(server)
    wrong = phone.register("1000", "not-the-password")
    missing = phone.register("7777", "whatever")
    assert wrong is not None and missing is not None
    assert (wrong.status, wrong.reason) == (missing.status, missing.reason) == (401, "Unauthorized")


def test_too_brief_expiry_is_423_with_min_expires(server: IpbxServer) -> None:
    response = _client(server).register("1001", "secret1001", expires=10)
    assert response is not None and response.status == 423
    assert response.headers.get("Min-Expires") == "60"


def test_star_unregisters_everything(server: IpbxServer) -> None:
    phone = _client(server)
    assert phone.register("1002", "secret1002", contact_port=6001).status == 200  # type: ignore[union-attr]
    response = phone.request(
        "REGISTER",
        f"sip:{LOOPBACK}",
        user="1002",
        password="secret1002",
        headers=["Contact: *", "Expires: 0"],
    )
    assert response is not None and response.status == 200
    assert response.contacts == []
    bad = phone.request(
        "REGISTER", f"sip:{LOOPBACK}", user="1002", password="secret1002", headers=["Contact: *"]
    )
    assert bad is not None and bad.status == 400


def test_several_contacts_per_address_of_record(server: IpbxServer) -> None:
    desk, soft = _client(server), _client(server)
    assert desk.register("1003", "secret1003").status == 200  # type: ignore[union-attr]
    both = soft.register("1003", "secret1003")
    assert both is not None and {c.uri.port for c in both.contacts} == {
        desk.local_port,
        soft.local_port,
    }


def test_options_lists_what_we_allow(server: IpbxServer) -> None:
    response = _client(server).request("OPTIONS", f"sip:{LOOPBACK}:{server.port}")
    assert response is not None and response.status == 200
    assert "INVITE" in (response.headers.get("Allow") or "")


def test_calls_to_unknown_and_unregistered_extensions(server: IpbxServer) -> None:
    caller = _client(server)
    body = SDP.format(port=4000).encode()
    sdp = ["Content-Type: application/sdp"]
    unknown = caller.request(
        "INVITE", f"sip:4321@{LOOPBACK}", password="secret1000", headers=sdp, body=body
    )
    assert unknown is not None and unknown.status == 404
    away = caller.request(
        "INVITE", f"sip:1001@{LOOPBACK}", password="secret1000", headers=sdp, body=body
    )
    assert away is not None and away.status == 480


def test_echo_test_returns_our_rtp(server: IpbxServer) -> None:
    rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rtp.bind((LOOPBACK, 0))
    rtp.settimeout(2)
    caller = _client(server)
    answer = caller.request(
        "INVITE",
        f"sip:9196@{LOOPBACK}",
        password="secret1000",
        headers=[
            "Content-Type: application/sdp",
            f"Contact: <sip:1000@{LOOPBACK}:{caller.local_port}>",
        ],
        body=SDP.format(port=rtp.getsockname()[1]).encode(),
    )
    assert answer is not None and answer.status == 200
    media_port = int(answer.body.decode().split("m=audio ")[1].split()[0])
    packet = struct.pack("!BBHII", 0x80, 0, 1, 160, 0x1234) + bytes(160)
    rtp.sendto(packet, (LOOPBACK, media_port))
    assert rtp.recv(2048) == packet


def test_sha256_digest_when_configured(tmp_path: Path) -> None:
    from ipbx.sip.auth import authorization

    port = free_port("both")
    server = launch(
        tmp_path, port, f"udp://{LOOPBACK}:{port}", "  digest_algorithms: [SHA-256, MD5]\n"
    )
    try:
        phone = SipClient(port)
        uri = f"sip:{LOOPBACK}"
        contact = [f"Contact: <sip:1000@{LOOPBACK}:{phone.local_port}>"]
        phone.send(phone.message("REGISTER", uri, call_id="sha", headers=contact))
        challenge = phone.receive()
        assert challenge is not None
        sha, md5 = challenge.headers.get_all("WWW-Authenticate")
        assert "algorithm=SHA-256" in sha and "algorithm=MD5" in md5  # preferred first
        creds = authorization(sha, "REGISTER", uri, "1000", "secret1000")
        headers = [*contact, f"Authorization: {creds}"]
        phone.send(phone.message("REGISTER", uri, call_id="sha", cseq=2, headers=headers))
        ok = phone.receive()
        assert ok is not None and ok.status == 200
    finally:
        server.stop()


def _invite_arrives(sock: socket.socket) -> Request:
    data = sock.recv(65535)
    msg = parse_datagram(data)
    assert isinstance(msg, Request)
    return msg


def test_registration_survives_a_restart(tmp_path: Path) -> None:
    port = free_port("both")
    listen = f"udp://{LOOPBACK}:{port}, tcp://{LOOPBACK}:{port}"
    server = launch(tmp_path, port, listen)
    phone = SipClient(port, timeout=3)
    try:
        assert phone.register("1001", "secret1001").status == 200  # type: ignore[union-attr]
    finally:
        server.stop()
    server = launch(tmp_path, port, listen)
    try:
        _send_authenticated_invite(SipClient(port))
        invite = _invite_arrives(phone.sock)
        assert invite.method == "INVITE"
        assert invite.uri.port == phone.local_port
    finally:
        server.stop()


def _send_authenticated_invite(caller: SipClient) -> None:
    """INVITE 1001 as 1000 without waiting for the final answer (the callee is us)."""
    contact = f"Contact: <sip:1000@{LOOPBACK}:{caller.local_port}>"
    send_authenticated_invite(
        caller,
        f"sip:1001@{LOOPBACK}",
        ["Content-Type: application/sdp", contact],
        SDP.format(port=4002).encode(),
    )


def test_calls_reach_a_tcp_phone_over_its_own_connection(server: IpbxServer) -> None:
    """The connection a phone registered over is how it is reached (NAT-friendly)."""
    phone = _client(server, "tcp")
    assert phone.register("1001", "secret1001").status == 200  # type: ignore[union-attr]
    _send_authenticated_invite(_client(server))
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        data = phone.sock.recv(65535)
        if data.startswith(b"INVITE "):
            break
    else:
        pytest.fail("no INVITE on the registered TCP connection")
    phone.close()


def test_tls_listener_with_a_self_signed_certificate(tmp_path: Path) -> None:
    port, tls_port = free_port("both"), free_port("tcp")
    server = launch(tmp_path, port, f"udp://{LOOPBACK}:{port}, tls://{LOOPBACK}:{tls_port}")
    try:
        client = SipClient(tls_port, transport="tls")
        response = client.request("OPTIONS", f"sip:{LOOPBACK}:{tls_port};transport=tls")
        assert response is not None and response.status == 200
        assert (tmp_path / "data" / "tls-cert.pem").exists()
    finally:
        server.stop()


def test_invite_with_exhausted_max_forwards_is_483(server: IpbxServer) -> None:
    caller = _client(server)
    contact = f"Contact: <sip:1000@{LOOPBACK}:{caller.local_port}>"
    caller.send(
        caller.message(
            "INVITE",
            f"sip:1001@{LOOPBACK}",
            headers=["Content-Type: application/sdp", contact],
            body=SDP.format(port=4000).encode(),
        ).replace(b"Max-Forwards: 70", b"Max-Forwards: 0")
    )
    response = caller.receive()
    assert response is not None and response.status in (407, 483)
    if response.status == 407:
        # Authenticate, keeping Max-Forwards at 0: the call must not be forwarded.
        from ipbx.sip.auth import authorization

        creds = authorization(
            response.headers.get_all("Proxy-Authenticate")[0],
            "INVITE",
            f"sip:1001@{LOOPBACK}",
            "1000",
            "secret1000",
        )
        caller.send(
            caller.message(
                "INVITE",
                f"sip:1001@{LOOPBACK}",
                cseq=2,
                headers=["Content-Type: application/sdp", contact, f"Proxy-Authorization: {creds}"],
                body=SDP.format(port=4000).encode(),
            ).replace(b"Max-Forwards: 70", b"Max-Forwards: 0")
        )
        response = caller.receive()
    assert response is not None and response.status == 483


def test_ipv6_registration_and_options(tmp_path: Path) -> None:
    port = free_port("both")
    server = launch(tmp_path, port, f"udp://{LOOPBACK}:{port}, 'udp://[::1]:{port}'")
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
            sock.bind(("::1", 0))
            sock.settimeout(2)
            local = sock.getsockname()[1]
            sock.sendto(
                (
                    f"OPTIONS sip:[::1]:{port} SIP/2.0\r\n"
                    f"Via: SIP/2.0/UDP [::1]:{local};branch=z9hG4bK6v6;rport\r\n"
                    f"From: <sip:1000@[::1]>;tag=v6\r\nTo: <sip:[::1]:{port}>\r\n"
                    "Call-ID: v6@test\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n"
                    "Content-Length: 0\r\n\r\n"
                ).encode(),
                ("::1", port),
            )
            data, source = sock.recvfrom(65535)
        response = parse_datagram(data)
        assert isinstance(response, Response) and response.status == 200
        assert source[0] == "::1"
        assert response.via.params.get("rport") == str(local)
    finally:
        server.stop()


def test_qualify_skips_a_contact_that_stopped_answering(tmp_path: Path) -> None:
    port = free_port("both")
    sip_extra = "  qualify_interval: 0.5\n  timer_t1: 0.02\n"
    server = launch(tmp_path, port, f"udp://{LOOPBACK}:{port}", sip_extra)
    try:
        gone = SipClient(port)
        assert gone.register("1001", "secret1001").status == 200  # type: ignore[union-attr]
        gone.close()  # the phone is unplugged: pings to it go unanswered
        deadline = time.monotonic() + 10
        while "is unreachable" not in server.log_tail(50) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert "is unreachable" in server.log_tail(50)
        caller = SipClient(port)
        response = caller.request(
            "INVITE",
            f"sip:1001@{LOOPBACK}",
            password="secret1000",
            headers=["Content-Type: application/sdp"],
            body=SDP.format(port=4000).encode(),
        )
        assert response is not None and response.status == 480
        # Refused at once for want of a reachable contact, not after ringing a dead one.
        assert "no reachable contact" in response.reason
    finally:
        server.stop()


def test_idle_tcp_connections_are_closed(tmp_path: Path) -> None:
    port = free_port("both")
    listen = f"udp://{LOOPBACK}:{port}, tcp://{LOOPBACK}:{port}"
    server = launch(tmp_path, port, listen, "  qualify_interval: 0.2\n  tcp_idle_timeout: 1\n")
    try:
        silent = socket.create_connection((LOOPBACK, port), timeout=5)
        talker = SipClient(port, transport="tcp", timeout=5)
        response = talker.request("OPTIONS", f"sip:{LOOPBACK}:{port};transport=tcp")
        assert response is not None and response.status == 200
        assert silent.recv(1) == b""  # closed by the server, not timed out here
        assert talker.sock.recv(1) == b""
        assert "closing idle connection" in server.log_tail(20)
    finally:
        server.stop()


def test_instance_id_is_echoed_and_replaces_the_old_contact(server: IpbxServer) -> None:
    instance = '+sip.instance="<urn:uuid:00000000-0000-1000-8000-000000000001>"'
    first, second = _client(server), _client(server)
    for phone in (first, second):  # the same device, rebooted on a new port
        contact = f"Contact: <sip:1003@{LOOPBACK}:{phone.local_port}>;{instance}"
        ok = phone.request(
            "REGISTER", f"sip:{LOOPBACK}", user="1003", password="secret1003", headers=[contact]
        )
        assert ok is not None and ok.status == 200
    ports = {c.uri.port for c in ok.contacts}
    assert second.local_port in ports and first.local_port not in ports
    (binding,) = [c for c in ok.contacts if "+sip.instance" in c.params]
    assert binding.uri.port == second.local_port
    assert binding.params["+sip.instance"] == '"<urn:uuid:00000000-0000-1000-8000-000000000001>"'


def test_offer_without_audio_or_malformed_is_refused_at_once(server: IpbxServer) -> None:
    caller = _client(server)
    video_only = (
        b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        b"m=video 4000 RTP/AVP 31\r\n"
    )
    for body, status in ((video_only, 488), (b"this is not sdp", 400)):
        response = caller.request(
            "INVITE",
            f"sip:9196@{LOOPBACK}",
            password="secret1000",
            headers=["Content-Type: application/sdp"],
            body=body,
        )
        assert response is not None and response.status == status, response
