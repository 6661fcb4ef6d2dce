"""Subscriptions survive a restart: a BLF key's subscription (RFC 6665) is in the store,
and the restarted ipbx NOTIFYs it at once in the same dialog, its version counting on
(RFC 4235 §4.1), and takes its refresh."""

from __future__ import annotations

import re
from pathlib import Path

from ipbx.sip.message import Request, Response, parse_datagram
from tests.support.server import start_configured_ipbx
from tests.support.sipclient import LOOPBACK, SipClient, in_dialog, next_request, reply_to

WATCHER, WATCHED = "1002", "1001"


def take_notify(client: SipClient) -> Request:
    notify = next_request(client, "NOTIFY")
    client.send(reply_to(notify, 200, []))
    return notify


def next_response(client: SipClient) -> Response:
    """The next response, answering on the way the NOTIFYs the restarted ipbx sent again
    (it sends the restored state at start, before the test reads it: Timer E repeats it
    until the phone's 200 arrives), as a phone does."""
    while True:
        for data in client.frames():
            message = parse_datagram(data)
            if isinstance(message, Response):
                return message
            client.send(reply_to(message, 200, []))


def version_of(notify: Request) -> str:
    found = re.search(r'version="(\d+)"', notify.body.decode())
    assert found is not None, notify.body
    return found.group(1)


def test_a_blf_subscription_is_notified_again_after_a_restart(tmp_path: Path) -> None:
    server = start_configured_ipbx(tmp_path, lambda config: None)
    phone = SipClient(server.port)
    try:
        ok = phone.request(
            "SUBSCRIBE", f"sip:{WATCHED}@{LOOPBACK}:{server.port}", user=WATCHER,
            to=f"sip:{WATCHED}@{LOOPBACK}", password=f"secret{WATCHER}",
            headers=[f"Contact: <sip:{WATCHER}@{LOOPBACK}:{phone.local_port}>",
                     "Event: dialog", "Expires: 600"],
        )  # fmt: skip
        assert ok is not None and ok.status == 200, ok
        assert version_of(take_notify(phone)) == "0"
        server.stop()

        server = start_configured_ipbx(tmp_path, lambda config: None)
        phone.port = server.port  # the 200 to its NOTIFY goes to the restarted server
        again = take_notify(phone)
        assert (again.call_id, again.to.tag, again.from_.tag) == (
            ok.call_id, ok.from_.tag, ok.to.tag,
        )  # fmt: skip
        assert (again.headers.get("Subscription-State") or "").startswith("active;expires=")
        assert version_of(again) == "1"

        phone.send(
            in_dialog(
                phone, "SUBSCRIBE", f"sip:{LOOPBACK}:{server.port}",
                str(ok.headers.get("From")), str(ok.headers.get("To")), ok.call_id, 3,
                [f"Contact: <sip:{WATCHER}@{LOOPBACK}:{phone.local_port}>",
                 "Event: dialog", "Expires: 600"],
            )
        )  # fmt: skip
        refreshed = next_response(phone)
        assert refreshed.status == 200, refreshed
        notify = take_notify(phone)
        while notify.headers.get("CSeq") == again.headers.get("CSeq"):
            notify = take_notify(phone)  # the restored state's NOTIFY, sent again
        assert version_of(notify) == "2"
    finally:
        phone.close()
        server.stop()
