"""SIP Outbound (RFC 5626) at the registrar: a phone reached over the flow it registered on.

A phone that supports outbound sends its REGISTER with the `outbound` option tag in
Supported and a Contact naming its device (`+sip.instance`) and the flow (`reg-id`, one
per connection it keeps to us). ipbx is that phone's edge proxy and registrar in one, so
the flow is what the REGISTER came over: a TCP, TLS or WebSocket connection, or over UDP
the address and port it came from.

- The binding is named by (AOR, instance, reg-id), not by its Contact URI (RFC 5626 §6):
  a REGISTER over a new flow replaces the binding of the same instance and reg-id, two
  reg-ids of one instance are two flows.
- The 200 says the registrar used outbound with `Require: outbound` (§6) and asks for
  keep-alives at least every `Flow-Timer` seconds (§5.4): over a stream a CRLFCRLF
  "ping" that sip/transport/stream.py answers with a CRLF "pong" (§4.4.1), over UDP
  STUN binding requests on the SIP port, which sip/stun.py answers.
- A REGISTER that passed a proxy (more than one Via) is outbound only if that first hop
  said it keeps flows (`ob` on the first Path URI, RFC 3327). ipbx keeps no Path, so such
  a REGISTER is served as RFC 3261 says, and one whose first hop did not say so gets 439
  First Hop Lacks Outbound Support (§6). A REGISTER with a reg-id and more than one
  Contact that binds is a 400 (§6).

Requests to the phone then go over its flow while it lives; once a connection is gone,
to its Contact (pbx/nat.py), and to the new flow as soon as the phone registers over one.
Without `Supported: outbound`, or without instance and reg-id, nothing here applies and
the registrar behaves as RFC 3261 §10.3 says.
"""

from __future__ import annotations

from ipbx.sip.errors import SipError
from ipbx.sip.message import Request
from ipbx.sip.session_timer import option_tags
from ipbx.sip.uri import NameAddr

OUTBOUND = "outbound"


def asks_for_outbound(request: Request) -> bool:
    """Whether this REGISTER asks for outbound (the option tag in Supported, a Contact
    with an instance and a reg-id) and may have it here; raises 439 when a proxy before
    us does not support it."""
    if OUTBOUND not in option_tags(request, "Supported"):
        return False
    if not any(reg_id(contact) is not None for contact in request.contacts):
        return False
    if len(request.vias) == 1:
        return True
    paths = request.name_addrs("Path")
    if paths and "ob" in paths[0].uri.params:
        return False  # a flow at that proxy, which a registrar without Path cannot use
    raise SipError(439, "the first hop does not support outbound (no ob in Path)")


def reg_id(contact: NameAddr) -> int | None:
    """The flow a Contact registers (its reg-id, a positive number), when it names its
    device instance too."""
    value = contact.params.get("reg-id")
    if value is None or not contact.params.get("+sip.instance"):
        return None
    text = value.strip()
    if not text.isdigit() or len(text) > 10 or not 0 < int(text) < 2**31:
        raise SipError(400, f"bad reg-id {value!r}")
    return int(text)


def check_one_flow(contacts: list[NameAddr], binding: list[bool]) -> None:
    """RFC 5626 §6: a REGISTER with a reg-id binds one Contact; `binding` tells which
    Contacts have a non-zero expiry."""
    if sum(binding) > 1 and any("reg-id" in c.params for c in contacts):
        raise SipError(400, "a REGISTER with reg-id binds a single Contact")


def response_headers(flow_timer: int) -> list[tuple[str, str]]:
    """What a 200 to an outbound REGISTER adds."""
    return [("Require", OUTBOUND), ("Flow-Timer", str(flow_timer))]
