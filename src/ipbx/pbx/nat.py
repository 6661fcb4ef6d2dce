"""Where requests to a phone go: its Contact, or the address its messages come from.

A phone names in its Contact where it wants requests (RFC 3261 §10.3, §12.1.1) and ipbx
sends them there, unless the phone sits behind a NAT, where that address means nothing
outside its network. NAT is detected on the request that carried the Contact (a REGISTER,
or an INVITE that starts a dialog):

- the top Via's sent-by differs from the address or the port the packet came from
  (Kamailio's `nat_uac_test` flags 2 and 16; no port means 5060);
- the Contact holds a private (RFC 1918), shared (RFC 6598), unique-local (fc00::/7) or
  link-local (169.254.0.0/16, fe80::/10) address that is not the packet's source
  (`nat_uac_test` flag 1 looks for the first two).

A phone found behind NAT is reached where its packets come from (the NAT's mapping, which
its keep-alives and our OPTIONS hold open), as a Kamailio configuration does when it calls
`fix_nated_register` after the test matched, storing the source address with the
registration. Over TCP, TLS or WebSocket the connection the phone opened carries requests to it
while it lives (RFC 5626 flows), the Contact after that. A browser over WebSocket writes a
host under `.invalid` in its Via and Contact (`df7jal23ls0d.invalid` in RFC 7118 §8's
examples), a name that never resolves (RFC 6761 §6.4): it says nothing of a NAT, is never
looked up, and the browser is reached over its connection alone. An `ob` parameter on the Contact
of a dialog's request or answer asks for the dialog's requests over the flow it came on
(RFC 5626): over UDP that is the address and port it came from. An extension's `nat`
setting overrides the detection: `force` always uses the source, `never` always the Contact.
"""

from __future__ import annotations

import functools
import ipaddress
from typing import Literal

from ipbx.sip.message import Request
from ipbx.sip.transaction import Address
from ipbx.sip.transport.endpoint import DEFAULT_PORTS
from ipbx.sip.uri import Uri

NatMode = Literal["auto", "force", "never"]

_PRIVATE = tuple(
    ipaddress.ip_network(n)
    for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "169.254.0.0/16",
              "fc00::/7", "fe80::/10")
)  # fmt: skip


# Every call asks these of the same few phone and trunk addresses: parsed once each.
@functools.lru_cache(maxsize=4096)
def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def _same_host(a: str, b: str) -> bool:
    if a == b:
        return True
    ip_a, ip_b = _ip(a), _ip(b)
    return ip_a == ip_b if ip_a is not None and ip_b is not None else a.lower() == b.lower()


@functools.lru_cache(maxsize=4096)
def private(host: str) -> bool:
    """Whether `host` is an address that does not route on the Internet (RFC 1918, RFC
    6598 shared, IPv4 and IPv6 link-local, IPv6 unique-local)."""
    address = _ip(host)
    return address is not None and any(address in network for network in _PRIVATE)


def contact_address(uri: Uri) -> Address | None:
    """The address a Contact URI names, when its host is a literal IP address (a name
    would need a DNS lookup on the hot path; such a phone is reached at its source)."""
    transport = (uri.transport or ("tls" if uri.scheme == "sips" else "udp")).upper()
    host, port = uri.host_port(DEFAULT_PORTS.get(transport, 5060))
    if _ip(host) is None:
        return None
    return Address(transport, host, port)


def invalid(host: str) -> bool:
    """Whether `host` is a name under `.invalid`, which no resolver answers (RFC 6761)."""
    return host.lower().rstrip(".").endswith(".invalid")


def behind_nat(request: Request, contact: Uri, source: Address) -> bool:
    """The tests of the module docstring, on a request received from `source`."""
    via = request.via
    if invalid(via.host):
        return False
    sent_by_port = via.port if via.port is not None else DEFAULT_PORTS.get(via.transport, 5060)
    if not _same_host(via.host, source.host) or sent_by_port != source.port:
        return True
    return private(contact.host) and not _same_host(contact.host, source.host)


def nat_detected(request: Request, contact: Uri, source: Address, mode: NatMode) -> bool:
    """Whether requests for `contact` go to `source` (see the module docstring)."""
    if mode == "force":
        return True
    if mode == "never":
        return False
    return behind_nat(request, contact, source)


def dialog_target(
    request: Request, source: Address, mode: NatMode, connected: bool
) -> tuple[Address, bool]:
    """Where requests go in the dialog `request` (from `source`) starts, and whether its
    sender is behind NAT: its Contact, the remote target (RFC 3261 §12.1.1), unless NAT
    is detected or `mode` says otherwise. Through a proxy that record-routes, the next hop
    is that proxy (§12.2.1.1), the one the request came from."""
    if request.headers.get("Record-Route"):
        return source, False
    contact = request.contacts[0].uri
    nat = nat_detected(request, contact, source, mode)
    flow = nat or _udp_flow(contact, source)
    return request_target(source, contact_address(contact), flow, connected), nat


def answer_target(
    sent_to: Address, contact: Uri | None, *, nat: bool, routed: bool, connected: bool
) -> Address:
    """Where requests go in a dialog with a phone or trunk we called, once it answered:
    the Contact of its 2xx, the remote target (RFC 3261 §12.1.2), unless a proxy
    record-routed (the next hop is the proxy we sent to), the phone is behind NAT (it
    is reached where we reached it, and so is one whose Contact asks for its flow) or its
    2xx names a private address, or no address."""
    if nat or routed or (contact is not None and _udp_flow(contact, sent_to)):
        return sent_to
    address = contact_address(contact) if contact is not None else None
    if address is None or (private(address.host) and not _same_host(address.host, sent_to.host)):
        return sent_to
    return request_target(sent_to, address, False, connected)


def _udp_flow(contact: Uri, peer: Address) -> bool:
    """Whether a Contact with `ob` asks for requests over a UDP flow from `peer` (over a
    stream, `request_target` keeps to the connection anyway)."""
    return "ob" in contact.params and not peer.reliable


def request_target(source: Address, contact: Address | None, nat: bool, connected: bool) -> Address:
    """Where requests to a phone go: over its live connection, to its source when it is
    behind NAT (or names no address), else to its Contact."""
    if source.reliable and connected:
        return source
    if nat or contact is None:
        return source
    return contact
