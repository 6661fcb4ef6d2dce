"""The call engine the PBX core and the router hold: the registry of calls with each
mechanism attached. It decides nothing about where a call goes (pbx/router.py does)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from ipbx.media.channel import ChannelPair
from ipbx.media.kernel import KernelRelay
from ipbx.media.moh import MusicOnHold
from ipbx.media.ports import PortPool
from ipbx.media.workers import MediaWorkers
from ipbx.pbx.call.dial import Dialing
from ipbx.pbx.call.fork import Forking
from ipbx.pbx.call.hold import Hold
from ipbx.pbx.call.indialog import InDialog
from ipbx.pbx.call.local import CallFlows
from ipbx.pbx.call.media_timeout import MediaTimeout
from ipbx.pbx.call.model import Call, CallPolicy, new_call_id
from ipbx.pbx.call.originate import originate
from ipbx.pbx.call.park import ParkedCalls
from ipbx.pbx.call.recording import stop_recording
from ipbx.pbx.call.registry import CallRegistry
from ipbx.pbx.call.transfer import Transfers
from ipbx.pbx.call.trunk import TrunkDialing
from ipbx.pbx.dialplan import OutboundCall
from ipbx.pbx.location import Location
from ipbx.pbx.trunks import Trunks
from ipbx.sip.errors import SipError
from ipbx.sip.message import Request
from ipbx.sip.transaction import Address, ServerTransaction
from ipbx.sip.transport.endpoint import SipEndpoint

log = logging.getLogger("ipbx.calls")


class Calls(CallRegistry):
    def __init__(
        self,
        endpoint: SipEndpoint,
        location: Location,
        ports: PortPool[ChannelPair],
        media_address: str | None,
        is_extension: Callable[[str], str | None],
        policy: CallPolicy,
        trunks: Trunks,
        music: MusicOnHold | None = None,
        workers: MediaWorkers | None = None,
        kernel: KernelRelay | None = None,
    ) -> None:
        super().__init__(endpoint, location, ports, media_address, policy)
        self.is_extension = is_extension
        self.flows = CallFlows(self)
        self.forking = Forking(self)
        self.dialing = Dialing(self.forking)
        self.trunks = TrunkDialing(self.dialing, trunks)
        self.transfers = Transfers(self.trunks, is_extension)
        self.hold = Hold(self, music)
        self.parked = ParkedCalls(self.flows, music)
        self.in_dialog = InDialog(self, self.flows, self.hold, self.transfers)
        self.media_timeout = MediaTimeout(
            self, lambda: self.policy.media_timeout, self.refresh_meters
        )
        # Processes that carry bridged calls' media (media/workers.py); None: all here.
        self.media_workers = workers
        if workers is not None:
            ports.offload = workers.offload
            workers.on_lost = self.media_timeout.lost
        # The kernel forwarding of relayed calls (media/kernel.py), before any worker.
        self.kernel_relay = kernel
        if kernel is not None:
            ports.offload = kernel.offload
            kernel.fallback = workers.move if workers is not None else None
        # A recording still running stops first: the call record names a complete file.
        self.on_end.append(lambda call: stop_recording(self, call))

    def refresh_meters(self) -> None:
        """Bring up the meters of the legs whose media is carried elsewhere: what the
        kernel counted at once, the media workers' readings with their answer."""
        if self.kernel_relay is not None:
            self.kernel_relay.refresh()
        if self.media_workers is not None:
            self.media_workers.refresh()

    def close(self) -> None:
        self.media_timeout.close()
        super().close()
        if self.kernel_relay is not None:
            self.kernel_relay.close()
        if self.media_workers is not None:
            self.media_workers.close()

    def on_in_dialog(self, request: Request, source: Address, tx: ServerTransaction | None) -> bool:
        """Handle a request with a To tag from `source`; False if it belongs to no dialog
        of ours."""
        return self.in_dialog.on_request(request, source, tx)

    def on_cancel(self, tx: ServerTransaction) -> bool:
        """The caller cancelled its INVITE; False when no call rings for it."""
        call = self.by_invite.get(id(tx))
        if call is None or call.callee is not None:
            return False
        log.info("%s cancelled by the caller", call.id)
        call.cancelled = True
        self.endpoint.reply(tx, 487)
        for fork in call.forks:
            self.cancel_fork(fork)
        self.end(call)
        return True

    def reach(self, number: str, by: str | None, caller: str) -> tuple[OutboundCall, str] | None:
        """How a call ipbx places reaches `number`: None for an extension, else the
        outbound route and caller ID for `caller`, with `by`'s permission (None: any
        route). LookupError for a number no extension and no route takes,
        PermissionError for one `by` may not call."""
        if self.is_extension(number) is not None:
            return None
        try:
            return self.trunks.outside(number, by, caller)
        except SipError as exc:
            if exc.status == 403:
                raise PermissionError(exc.reason) from None
            raise LookupError(exc.reason) from None

    def originate(
        self,
        agent: str,
        number: str,
        timeout: float = 30.0,
        agent_status: asyncio.Future[int] | None = None,
    ) -> Call:
        """Click-to-call: ring `agent`'s phones; when one answers, ring `number` (an
        extension, or an outside number through the outbound routes with the agent's
        permission) and connect the two; `agent_status`, when given, gets the agent's
        answer (200) or refusal. Raises LookupError for an agent that is no extension
        or a number with no extension or route, PermissionError for a number the agent
        may not call."""
        if self.is_extension(agent) is None:
            raise LookupError(f"no extension {agent}")
        route = self.reach(number, agent, agent)
        call = Call(new_call_id(), agent, number, placed=True)
        call.route = route[0] if route is not None else None
        call.path.append(f"originate:{agent}")
        self.calls[call.id] = call
        self.publish_start(call)
        placing = originate(self.trunks, call, agent, number, timeout, route, agent_status)
        self.spawn_task(placing)
        return call

    def hang_up(self, call: Call) -> None:
        """End a call from our side in whatever state it is: BYE to the legs that
        answered, CANCEL to phones still ringing, 487 to a caller not yet answered."""
        if call.dialing is not None and not call.dialing.done():
            call.dialing.set_result(487)  # a click-to-call or a transfer stops dialling
        if call.answered is None:
            call.status = 487  # the record says no_answer, not failed
        self.flows.hangup(call, 487)
