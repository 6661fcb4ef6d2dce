"""Requests inside a dialog: ACK, BYE, REFER, and re-INVITE, UPDATE and INFO, which
go to the other leg with SDP anchored on our own media (hold and resume, session
refresh), or are answered here on a leg ipbx terminates.
"""

from __future__ import annotations

import logging

from ipbx import sdp
from ipbx.pbx.call.hold import Hold
from ipbx.pbx.call.local import CallFlows
from ipbx.pbx.call.model import Leg, parse_sdp
from ipbx.pbx.call.negotiate import forward, restated
from ipbx.pbx.call.registry import CallRegistry
from ipbx.pbx.call.transfer import Transfers
from ipbx.sip.dialog import dialog_key_of
from ipbx.sip.errors import SipError
from ipbx.sip.message import Request, Response
from ipbx.sip.transaction import Address, ServerTransaction, make_response
from ipbx.sip.transport.stream import WEBSOCKET

log = logging.getLogger("ipbx.calls")


class InDialog:
    def __init__(
        self, registry: CallRegistry, flows: CallFlows, hold: Hold, transfers: Transfers
    ) -> None:
        self.registry = registry
        self.flows = flows
        self.hold = hold
        self.transfers = transfers

    def on_request(self, request: Request, source: Address, tx: ServerTransaction | None) -> bool:
        """Handle a request with a To tag; False if it belongs to no dialog of ours."""
        reg = self.registry
        if request.method == "PRACK" and tx is not None:
            reg.provisionals.on_prack(request, tx)  # in the early dialog (RFC 3262)
            return True
        leg = reg.dialogs.get(dialog_key_of(request))
        if leg is None or leg.dialog is None:
            return False
        if source != leg.peer and self._moved(leg, source):
            log.info("%s: %s now reached at %s", leg.call.id, leg.peer, source)
            leg.peer = source
        if request.method == "ACK":
            if leg.incoming is not None and leg.incoming.receive_ack(request):
                reg.stop_2xx(leg)
                if leg.awaiting_answer is not None:
                    self._late_answer(leg, request)
            return True
        assert tx is not None
        leg.dialog.receive_request(request)
        if request.method == "BYE":
            reg.endpoint.reply(tx, 200)
            log.info("%s hung up by %s", leg.call.id, leg.peer)
            leg.call.ended_by = "caller" if leg is leg.call.caller else "callee"
            other = leg.other
            if other is not None and other.dialog is not None:
                reg.bye(other)
            reg.end(leg.call)
            return True
        if request.method == "REFER":
            self.transfers.on_refer(leg, request, tx)
            return True
        self._relay(leg, request, tx)
        return True

    def _moved(self, leg: Leg, source: Address) -> bool:
        """Whether our requests in `leg`'s dialog now go to `source`, where its request
        came from. That is so for a phone reached over its flow (behind NAT, or its
        Contact has `ob`, RFC 5626): over UDP when its mapping changed (it moved, or the
        mapping lapsed while it was silent), over a stream when its connection closed
        and it reached us over a new one. A browser is always on its flow: its WebSocket
        is the only way to it."""
        assert leg.dialog is not None
        on_flow = (
            leg.behind_nat
            or "ob" in leg.dialog.remote_target.params
            or leg.peer.transport in WEBSOCKET
        )
        if not source.reliable:
            return on_flow
        return on_flow and not self.registry.endpoint.connected(leg.peer)

    def _late_answer(self, leg: Leg, ack: Request) -> None:
        """The ACK that completes a late offer must carry the answer (RFC 3264 §2); without
        one, or with one we cannot use, the session cannot start: hang up."""
        hook, leg.awaiting_answer = leg.awaiting_answer, None
        assert hook is not None
        try:
            answer = parse_sdp(ack)
            if answer is None:
                raise SipError(400, "ACK without the answer to our offer")
            hook(answer)
        except (SipError, sdp.SdpError) as exc:
            log.info("%s: %s; hanging up", leg.call.id, exc)
            self.registry.hangup(leg.call)

    def _relay(self, leg: Leg, request: Request, tx: ServerTransaction) -> None:
        reg = self.registry
        other = leg.other
        if other is None or other.dialog is None:
            if request.method in ("INVITE", "UPDATE") and leg.call.callee is None:
                # A leg we answered ourselves: a refresh or hold gets our own answer.
                self.flows.refresh(leg, request, tx)
                return
            if request.method == "INFO":
                self.flows.info(leg, request)
            reg.endpoint.reply(tx, 200 if request.method == "INFO" else 405)
            return
        # Only INVITE and UPDATE carry offers to anchor; any other body (INFO's
        # application/dtmf-relay, say) passes through as it is.
        body, content_type = request.body, request.headers.get("Content-Type")
        standing = other.local_sdp  # the session if the other phone refuses this offer
        if request.method in ("INVITE", "UPDATE"):
            description = parse_sdp(request)
            if description is not None:
                answer = restated(leg, description)
                if answer is not None:
                    reg.accept_reoffer(leg, tx, answer)
                    return
                leg.direction = sdp.direction(description)
                if self.hold.on_offer(leg, other, description, tx):
                    return
            body, content_type = b"", "application/sdp"
            if description is not None:
                body = forward(leg, description, other, reg.sdp_address(other.peer))
                other.local_sdp = body
        extra = [("Contact", f"<{reg.endpoint.contact(other.peer)}>")]
        if request.method in ("INVITE", "UPDATE"):
            extra += reg.sessions.fields_for(other)
        out = other.dialog.create_request(request.method, body, content_type, extra)
        reg.endpoint.send_request(
            out, other.peer, lambda r, t: self._relay_response(leg, tx, other, out, r, standing)
        )

    def _relay_response(
        self,
        leg: Leg,
        tx: ServerTransaction,
        other: Leg,
        sent: Request,
        response: Response,
        standing: bytes,
    ) -> None:
        reg = self.registry
        if response.status == 100:
            return
        if response.status >= 300:
            other.local_sdp = standing  # a refused offer changes nothing (RFC 3264 §8)
        if other.dialog is not None:
            other.dialog.receive_response(response)
            reg.sessions.answered(other, response)
        if sent.method == "INVITE" and 200 <= response.status < 300 and other.dialog is not None:
            reg.endpoint.send_ack(other.dialog.create_ack(sent.cseq.number), other.peer)
        out = make_response(tx.request, response.status, response.reason, tx.to_tag)
        description = parse_sdp(response) if sent.method in ("INVITE", "UPDATE") else None
        if description is not None:
            other.direction = sdp.direction(description)
            out.body = leg.local_sdp = forward(other, description, leg, reg.sdp_address(leg.peer))
            out.headers.add("Content-Type", "application/sdp")
        if response.status < 300:
            out.headers.add("Contact", f"<{reg.endpoint.contact(leg.peer)}>")
        if tx.is_invite and 200 <= response.status < 300:
            reg.send_2xx(leg, tx, out)
        else:
            if response.status < 300:
                reg.sessions.answering(leg, tx.request, out)
            reg.endpoint.respond(tx, out)
