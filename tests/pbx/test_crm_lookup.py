"""CRM caller lookup on calls from a trunk: the ringing phone shows the CRM's name for
the caller, the answer is cached, and a CRM slower than its time-out does not hold the
call up (the phone rings without a name)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest

from tests.support.ports import LOOPBACK
from tests.support.server import CALLEE
from tests.support.sipclient import next_request
from tests.support.trunks import gateways, ip_trunk, ipbx, offer, registered, routing

KNOWN = "+12125550199"


@contextmanager
def crm(delay: float = 0.0) -> Iterator[tuple[str, list[str]]]:
    """A CRM on loopback: /lookup?number=N answers {"name": "Acme Corp"} for KNOWN."""
    asked: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            number = parse_qs(urlparse(self.path).query).get("number", [""])[0]
            asked.append(number)
            time.sleep(delay)
            body = json.dumps({"name": "Acme Corp"} if number == KNOWN else {}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer((LOOPBACK, 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{LOOPBACK}:{server.server_port}/lookup?number={{number}}", asked
    finally:
        server.shutdown()
        server.server_close()


def _inbound(gateway: Any, server: Any, call_id: str) -> None:
    contact = f"Contact: <sip:{KNOWN}@{LOOPBACK}:{gateway.port}>"
    gateway.client.send(
        gateway.client.message(
            "INVITE", f"sip:15550100@{LOOPBACK}:{server.port}", user=KNOWN, call_id=call_id,
            headers=[contact, "Content-Type: application/sdp"], body=offer(),
        )
    )  # fmt: skip


def test_the_ringing_phone_shows_the_crm_name_and_the_answer_is_cached(tmp_path: Path) -> None:
    with crm() as (url, asked), gateways(2) as (gw1, gw2):
        base = routing(ip_trunk(gw1), ip_trunk(gw2))

        def edit(config: dict[str, Any]) -> None:
            base(config)
            config["crm"] = {"url": url, "timeout_seconds": 2}

        with ipbx(tmp_path, edit) as server:
            gw2.attach(server)
            phone = registered(server, CALLEE.number, CALLEE.password)
            for call_id in ("crm-1", "crm-2"):
                _inbound(gw2, server, call_id)
                ring = next_request(phone, "INVITE")
                assert ring.from_.display == "Acme Corp"
                assert ring.from_.uri.user == KNOWN
    assert asked == [KNOWN]


@pytest.mark.alone  # the ring is timed
def test_a_slow_crm_does_not_hold_the_call(tmp_path: Path) -> None:
    with crm(delay=3.0) as (url, _), gateways(2) as (gw1, gw2):
        base = routing(ip_trunk(gw1), ip_trunk(gw2))

        def edit(config: dict[str, Any]) -> None:
            base(config)
            config["crm"] = {"url": url, "timeout_seconds": 0.3}

        with ipbx(tmp_path, edit) as server:
            gw2.attach(server)
            phone = registered(server, CALLEE.number, CALLEE.password)
            started = time.monotonic()
            _inbound(gw2, server, "crm-slow")
            ring = next_request(phone, "INVITE")
            assert time.monotonic() - started < 2.0
            assert ring.from_.display is None
