"""Driving the transaction layer without sockets: a peer's address, a request as a
phone sends it, and a fake clock run forward."""

from __future__ import annotations

from ipbx.sip.message import Request, parse_datagram
from ipbx.sip.transaction import Address, TransactionLayer

UDP = Address("UDP", "192.0.2.10", 5062)


def request(method: str = "INVITE", branch: str = "z9hG4bKabc", to_tag: str = "") -> Request:
    to = "<sip:1001@pbx>" + (f";tag={to_tag}" if to_tag else "")
    msg = parse_datagram(
        (
            f"{method} sip:1001@pbx SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 192.0.2.10:5062;branch={branch};rport\r\n"
            f"From: <sip:1000@pbx>;tag=f1\r\nTo: {to}\r\nCall-ID: c1@h\r\n"
            f"CSeq: 1 {method}\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        ).encode()
    )
    assert isinstance(msg, Request)
    return msg


def fire_all(layer: TransactionLayer, until: float) -> list[float]:
    """Run the clock to `until`, returning the times at which something was sent."""
    times = []
    while (deadline := layer.next_deadline()) is not None and deadline <= until:
        layer.expire(deadline)
        if layer.outgoing():
            times.append(deadline)
    return times
