"""The PBX core: the SIP transaction user that sends each request where it belongs
(registrar, calls, OPTIONS) after the checks RFC 3261 §8.2 asks of every UAS, in its
order: method (405/501), Request-URI scheme (416), Require (420), content (415/406),
then authentication."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Collection, Sequence

from ipbx.config import Config, MediaConfig
from ipbx.media.codecs import CODECS, Codec
from ipbx.media.kernel import KernelRelay
from ipbx.media.mixer import Mixer
from ipbx.media.moh import MusicOnHold
from ipbx.media.ports import PortPool
from ipbx.media.workers import MediaWorkers, worker_count
from ipbx.pbx import provisioning
from ipbx.pbx.blf import BusyLampField
from ipbx.pbx.call.engine import Calls
from ipbx.pbx.call.model import ALLOW, Call, CallPolicy
from ipbx.pbx.call_records import CallRecords
from ipbx.pbx.conference.engine import Conferences
from ipbx.pbx.control import CallControl
from ipbx.pbx.crm import CallerLookup
from ipbx.pbx.dialplan import Dialplan, Numbers
from ipbx.pbx.directory import Directory
from ipbx.pbx.events import REGISTRATION_CHANGED, EventBus
from ipbx.pbx.guard import Guard
from ipbx.pbx.location import Binding, Location
from ipbx.pbx.mailer import Mailer
from ipbx.pbx.messaging import Messaging
from ipbx.pbx.mwi import MessageWaiting
from ipbx.pbx.nat import NatMode
from ipbx.pbx.presence import Presence
from ipbx.pbx.queue.engine import Queues
from ipbx.pbx.queue.log import StoredQueueLog
from ipbx.pbx.registrar import Authenticator, ExpiryPolicy, Registrar
from ipbx.pbx.router import Router
from ipbx.pbx.subscription import Subscriptions
from ipbx.pbx.trunks import Trunks
from ipbx.pbx.voicemail import Mailboxes
from ipbx.sip.auth import DigestAuthenticator
from ipbx.sip.counts import MessageCounts
from ipbx.sip.errors import SipError
from ipbx.sip.message import Headers, Request, Response
from ipbx.sip.session_timer import IntervalTooSmall
from ipbx.sip.transaction import Address, ServerTransaction, Timers
from ipbx.sip.transport.certs import ensure_self_signed, server_context
from ipbx.sip.transport.endpoint import SipEndpoint, route_source
from ipbx.sip.uri import split_quoted
from ipbx.store import AsyncStore, CallRecord, QueueLogRecord, Store

log = logging.getLogger("ipbx.pbx")

# An address outside every local network (TEST-NET-1, RFC 5737): the interface the
# kernel would send to it from is the one on the default route. Nothing is sent.
DEFAULT_ROUTE_PROBE = "192.0.2.1"

# Option tags we implement: reliable provisional responses (RFC 3262), outbound flows
# at the registrar (RFC 5626, pbx/outbound.py), session timers (RFC 4028).
SUPPORTED: frozenset[str] = frozenset({"100rel", "outbound", "timer"})
# Methods we recognise but do not serve outside a dialog: 405 with Allow, not 501.
KNOWN = frozenset({"NOTIFY", "PUBLISH", "REFER", "PRACK"})
# How often a server checks whether the provisioning changed under it.
REVISION_POLL_SECONDS = 2.0
IN_DIALOG_ONLY = frozenset({"BYE", "UPDATE", "INFO", "PRACK", "NOTIFY", "ACK", "CANCEL"})


def _tokens(values: list[str]) -> list[str]:
    return [t.strip() for v in values for t in split_quoted(v, ",") if t.strip()]


class Pbx:
    def __init__(self, config: Config, store: Store) -> None:
        # What the file says; what runs is that with the provisioned items (the API's).
        self.base_config = config
        self.revision = store.revision()
        config = provisioning.effective(config, store)
        self.config = config
        # Everything on the event loop reaches the database through the store's thread.
        self.store = AsyncStore(store)
        # Called with the new configuration after every reload (the webhooks' workers).
        self.on_reconfigure: list[Callable[[Config], Awaitable[None]]] = []
        # What happened (call.started ... registration.changed), for the API's live
        # feed, webhooks and metrics (pbx/events.py lists the types and their data).
        self.events = EventBus()
        self.directory = Directory(store.list_extensions())
        self.location = Location(self.store)
        self.endpoint = SipEndpoint(
            self,
            max_message_size=config.sip.max_message_size,
            timers=Timers(t1=config.sip.timer_t1),
            user_agent=config.sip.user_agent,
            websocket_origins=config.sip.websocket_origins,
        )
        self.location.connected = self.endpoint.connected
        sip = config.sip
        self.guard = Guard(sip.ban_failures, sip.ban_window, sip.ban_seconds, sip.trusted)
        self.endpoint.admits = self.guard.admits
        self.endpoint.on_connection_closed = self._connection_closed
        self.auth = Authenticator(
            self.endpoint,
            self.directory,
            DigestAuthenticator(sip.realm, sip.nonce_lifetime, tuple(sip.digest_algorithms)),
            self.guard,
        )
        self.registrar = Registrar(
            self.endpoint,
            self.auth,
            self.location,
            ExpiryPolicy(sip.min_expires, sip.max_expires, sip.default_expires),
            sip.flow_timer,
        )
        # SUBSCRIBE/NOTIFY (RFC 6665) for message waiting (RFC 3842), the busy lamp field
        # (RFC 4235) and presence (RFC 3856), each package on the one notifier.
        self.subscriptions = Subscriptions(
            self.endpoint,
            self.auth,
            domain=sip.domain,
            min_expires=sip.min_expires,
            max_expires=sip.max_expires,
            default_expires=sip.default_expires,
            max_per_watcher=sip.max_subscriptions,
        )
        self.mwi = MessageWaiting(self.subscriptions, self.location)
        self.mailboxes = Mailboxes(
            config.data_dir,
            config.extensions,
            Mailer(config.smtp) if config.smtp is not None else None,
            self.mwi.notify,
        )
        self.mwi.counts = self.mailboxes.counts
        # Trunks, numbers (DIDs) and outbound routes (docs/trunks.md).
        self.trunks = Trunks(config.trunks, self.endpoint, config.data_dir)
        self.dialplan = Dialplan.from_config(config.outbound_routes, config.country)
        self.numbers = Numbers.from_config(config.numbers, config.country)
        media = config.media
        first, last = media.rtp_ports
        workers = worker_count(media.workers)
        self.calls = Calls(
            self.endpoint,
            self.location,
            PortPool(media.address, first, last),
            media.public_address or (None if _every_interface(media.address) else media.address),
            self._extension_name,
            self._policy(config),
            self.trunks,
            MusicOnHold(config.data_dir / "moh"),
            MediaWorkers(workers, media.address) if workers else None,
            KernelRelay(media.address) if media.relay == "kernel" else None,
        )
        self.calls.events = self.events
        self.records = CallRecords(config.data_dir / "recordings")
        self.calls.on_end.append(self.records.call_ended)
        self.crm = CallerLookup(config.crm) if config.crm is not None else None
        # What the call queues did (Asterisk's queue_log), kept in the store like the records.
        self.queue_log = StoredQueueLog(self.events)
        # Call queues and their agents, whose state outlives reloads (pbx/queue/).
        self.queues = Queues(self.calls, self.queue_log, self.events)
        self.queues.update(config.queues)
        self.conferences = Conferences(self.calls, self.events, Mixer, config)
        self.router = self._router(config)
        self.blf = BusyLampField(self.subscriptions, self.events, self.is_extension,
                                 lambda number: self.router.parking.is_slot(number))  # fmt: skip
        self.presence = Presence(self.subscriptions, self.events, self.location, self.blf,
                                 lambda number: self.router.handling.on_dnd(number))  # fmt: skip
        # Text messages (SIP MESSAGE): relayed, stored for phones away (pbx/messaging.py).
        self.messaging = Messaging(
            self.endpoint, self.location, self.auth, self.directory, self.trunks,
            self.store, self.events, sip.domain,
        )  # fmt: skip
        self.messaging.routing = self.router
        self.registrar.on_change = self._registration_changed
        self.registrar.nat_modes = self.subscriptions.nat_modes = _nat_modes(config)
        # Hang-up, transfer, recording and DTMF on calls in progress (the API's).
        self.control = CallControl(self.calls)
        self._tasks: list[asyncio.Task[None]] = []

    def _policy(self, config: Config) -> CallPolicy:
        return CallPolicy(
            recordings=config.data_dir / "recordings",
            record_always=frozenset(e.number for e in config.extensions if e.record == "always"),
            mixed_recordings=config.media.recording_format == "mixed",
            srtp_required=frozenset(e.number for e in config.extensions if e.srtp == "required"),
            codecs=preferred_codecs(config.media.codecs),
            media_timeout=config.media.timeout_seconds,
            session_expires=config.sip.session_expires,
            min_se=config.sip.min_se,
            nat=_nat_modes(config),
        )

    def _router(self, config: Config) -> Router:
        return Router(self.calls, config, self.mailboxes, self.dialplan, self.numbers,
                      self.queues, self.conferences, self.crm)  # fmt: skip

    async def reload(self, config: Config | None = None) -> None:
        """Take up what the database holds now: extensions and provisioned items
        (`config` when the caller has just composed and checked it). Calls in progress
        keep going; new calls follow the new configuration."""
        revision = await self.store.run(Store.revision)
        if config is None:
            config = await self.store.run(
                lambda store: provisioning.effective(self.base_config, store)
            )
        self.directory.replace(await self.store.run(Store.list_extensions))
        now = time.time()
        for aor in {b.aor for b in self.location.all_bindings(now)}:
            if self.directory.get(aor) is None:  # removed: its phones are no longer ours
                self.location.replace(aor, [], now)
        self.config = config
        self.dialplan = Dialplan.from_config(config.outbound_routes, config.country)
        self.numbers = Numbers.from_config(config.numbers, config.country)
        await self.trunks.update(config.trunks)
        self.mailboxes.update(config.extensions)
        self.calls.policy = self._policy(config)
        self.registrar.nat_modes = self.subscriptions.nat_modes = _nat_modes(config)
        self.queues.update(config.queues)
        self.conferences.update(config.conferences)
        self.router = self.messaging.routing = self._router(config)
        self.revision = revision
        for callback in self.on_reconfigure:
            await callback(config)
        log.info("configuration revision %d in use", revision)

    async def _follow_revision(self) -> None:
        """Reload when another process (`ipbx apply`, another node's API) changed the
        provisioning: the revision counter moves in the same transaction."""
        while True:
            await asyncio.sleep(REVISION_POLL_SECONDS)
            try:
                if await self.store.run(Store.revision) != self.revision:
                    await self.reload()
            except Exception:
                log.exception("could not take up the changed configuration; still on %d",
                              self.revision)  # fmt: skip

    def _registration_changed(self, aor: str, contacts: int) -> None:
        data = {"extension": aor, "registered": contacts > 0, "contacts": contacts}
        self.events.publish(REGISTRATION_CHANGED, data)
        if contacts > 0:
            self.queues.dispatch()  # an agent's phone that came back takes waiting callers
            self.messaging.registered(aor)  # and the messages that wait for it

    def _connection_closed(self, peer: Address) -> None:
        """A browser's WebSocket closed: what it registered over it cannot be reached."""
        now = time.time()
        for aor in self.location.drop_connection(peer, now):
            log.info("%s lost its contact over %s: the connection closed", aor, peer)
            self._registration_changed(aor, len(self.location.bindings(aor, now)))

    def _extension_name(self, number: str) -> str | None:
        ext = self.directory.get(number)
        return None if ext is None else ext.name

    async def start(self) -> list[Address]:
        restored = await self.location.load(time.time())
        if restored:
            log.info("restored %d registration(s)", restored)
        bound = []
        # Streams first, UDP last: a server that answers on UDP has every listener up
        # (tests and load balancers take an OPTIONS answer as "ready").
        for listen in sorted(self.config.sip.listen, key=lambda entry: entry.transport == "udp"):
            tls = None
            if listen.transport in ("tls", "wss"):
                cert, key = self.config.sip.tls_cert, self.config.sip.tls_key
                if cert is None or key is None:
                    cert, key = ensure_self_signed(self.config.data_dir)
                tls = server_context(cert, key)
            bound.append(
                await self.endpoint.listen(listen.transport, listen.host, listen.port, tls)
            )
        _say_media_address(self.calls.media_address, self.config.media)
        for record in await self.store.run(lambda store: store.load_subscriptions(time.time())):
            self.subscriptions.restore(record)
        self._tasks.append(asyncio.create_task(self._housekeeping()))
        self._tasks.append(asyncio.create_task(self._write_behind()))
        self._tasks.append(asyncio.create_task(self._follow_revision()))
        if self.calls.kernel_relay is not None:
            _start_kernel_relay(self.calls.kernel_relay)
        if self.calls.media_workers is not None:
            # In the background: calls are bridged here until a worker is ready.
            self._tasks.append(asyncio.create_task(self.calls.media_workers.start()))
        self.queues.start()
        await self.trunks.start()
        return bound

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.trunks.stop()  # un-REGISTER while the sockets are still open
        self.queues.close()
        self.conferences.close()
        self.messaging.close()
        self.calls.close()
        self.subscriptions.close()
        await self.endpoint.close()
        if self.crm is not None:
            await self.crm.close()
        await self._flush()

    async def _write_behind(self) -> None:
        while True:
            await asyncio.sleep(0.1)
            try:
                await self._flush()
            except Exception:
                log.exception("could not write the registrations; trying again")

    async def _flush(self) -> None:
        await self.location.flush()
        records = self.records.take()
        if records:
            await self.store.run(_save_records, records)
        queue_events = self.queue_log.take()
        if queue_events:
            await self.store.run(_save_queue_log, queue_events)
        saved, removed = self.subscriptions.changes()
        if saved or removed:
            await self.store.run(lambda store: store.save_subscriptions(saved, removed))

    # --- what the API uses besides the services above (api/services.py) ------------------

    def active_calls(self) -> Collection[Call]:
        return self.calls.calls.values()

    def originate(self, agent: str, number: str, timeout: float) -> Call:
        return self.calls.originate(agent, number, timeout)

    def is_extension(self, number: str) -> bool:
        return self._extension_name(number) is not None

    def rtp_totals(self) -> tuple[int, int]:
        self.calls.refresh_meters()
        return self.calls.ports.reception.totals()

    def media_bridges(self) -> list[int]:
        workers = self.calls.media_workers.workers if self.calls.media_workers else []
        return [len(worker.pairs) for worker in workers]

    @property
    def sip_messages(self) -> MessageCounts:
        return self.endpoint.layer.messages

    # --- TransactionUser --------------------------------------------------------------

    def on_request(self, request: Request, source: Address, tx: ServerTransaction | None) -> None:
        if tx is None:
            self.calls.on_in_dialog(request, source, None)
            return
        method = request.method
        if request.uri.scheme not in ("sip", "sips"):
            raise SipError(416, f"unsupported URI scheme {request.uri.scheme}")
        unsupported = [
            tag
            for tag in _tokens(request.headers.get_all("Require"))
            + _tokens(request.headers.get_all("Proxy-Require"))
            if tag not in SUPPORTED
        ]
        if unsupported:
            self.endpoint.reply(tx, 420, headers=[("Unsupported", ", ".join(unsupported))])
            return
        try:
            self.calls.sessions.check(request)
        except IntervalTooSmall as exc:
            self.endpoint.reply(tx, 422, headers=[("Min-SE", str(exc.min_se))])
            return
        if method == "SUBSCRIBE":
            self.subscriptions.on_subscribe(request, source, tx)  # new, or a refresh
            return
        if request.to.tag is not None:
            if not self.calls.on_in_dialog(request, source, tx):
                self.endpoint.reply(tx, 481)
            return
        if method == "REGISTER":
            self.registrar.on_register(request, source, tx, time.time())
        elif method == "OPTIONS":
            self.endpoint.reply(tx, 200, headers=self._capabilities())
        elif method == "INVITE":
            self._on_invite(request, source, tx)
        elif method == "MESSAGE":
            self.messaging.on_message(request, source, tx)
        elif method in IN_DIALOG_ONLY:
            self.endpoint.reply(tx, 481)
        elif method in KNOWN:
            self.endpoint.reply(tx, 405, headers=[("Allow", ALLOW)])
        else:
            self.endpoint.reply(tx, 501, headers=[("Allow", ALLOW)])

    def _on_invite(self, request: Request, source: Address, tx: ServerTransaction) -> None:
        accept = _tokens(request.headers.get_all("Accept"))
        if accept and not any(a.split(";")[0].strip().lower() in _SDP_TYPES for a in accept):
            self.endpoint.reply(tx, 406, headers=[("Accept", "application/sdp")])
            return
        if request.body and request.content_type != "application/sdp":
            self.endpoint.reply(tx, 415, headers=[("Accept", "application/sdp")])
            return
        trunk = self.trunks.trunk_for_source(source)
        if trunk is not None:
            # A provider's peer is trusted by its address (an IP trunk, or the server a
            # registration trunk registered to): no digest challenge.
            _one_contact(request)
            self.router.on_trunk_invite(request, source, tx, trunk)
            return
        if not request.headers.get("Proxy-Authorization") and not self.location.has_host(
            source.host
        ):
            # Calls from the outside come through trunks; anything else must prove it is
            # one of our phones. Toll-fraud scanners knock here: log who.
            log.warning("INVITE to %s from %s:%s:%s, no trunk peer or registered phone: "
                        "challenged", request.uri, source.transport, source.host,
                        source.port)  # fmt: skip
        caller = self.auth.check(request, tx, time.time())
        if caller is not None:
            _one_contact(request)
            self.router.on_invite(request, source, tx, caller)

    def on_cancel(self, tx: ServerTransaction) -> None:
        if not self.calls.on_cancel(tx):
            self.endpoint.reply(tx, 487)

    def on_no_ack(self, tx: ServerTransaction) -> None:
        # Timer H: the failure response was never acknowledged; the call ended with it.
        # (A 2xx without ACK is the call engine's own timer, RFC 3261 §13.3.1.4.)
        log.info("no ACK from %s for a final response to %s", tx.peer, tx.request.method)

    def _capabilities(self) -> list[tuple[str, str]]:
        return [
            ("Allow", ALLOW),
            ("Supported", ", ".join(sorted(SUPPORTED))),
            ("Accept", "application/sdp"),
            ("Accept-Language", "en"),
        ]

    # --- housekeeping: expiry and qualify ------------------------------------------------------

    async def _housekeeping(self) -> None:
        """Every qualify interval: expire registrations, close idle connections, ping."""
        interval = self.config.sip.qualify_interval
        while True:
            await asyncio.sleep(interval)
            now = time.time()
            for aor in self.location.expire(now):
                log.info("registration of %s expired", aor)
            self.endpoint.streams.reap(self.endpoint.loop.time(), self.config.sip.tcp_idle_timeout)
            for binding in self.location.all_bindings(now):
                self._qualify(binding)

    def _qualify(self, binding: Binding) -> None:
        """OPTIONS to a registered contact; one that does not answer is skipped for calls
        until it answers again (Asterisk's `qualify`, Kamailio's nathelper pings)."""
        dest = binding.destination(self.endpoint.connected)
        local = self.endpoint.local_address(dest)
        headers = Headers()
        headers.add("Max-Forwards", "70")
        headers.add("From", f"<sip:ipbx@{local.host}:{local.port}>;tag=q{id(binding) & 0xFFFFFF:x}")
        headers.add("To", f"<{binding.uri}>")
        headers.add("Call-ID", f"qualify-{id(binding):x}-{time.monotonic_ns()}")
        headers.add("CSeq", "1 OPTIONS")
        request = Request(headers, b"", "OPTIONS", binding.uri)

        def answered(response: Response, _tx: object) -> None:
            alive = response.status not in (408, 503)
            if alive != binding.reachable:
                log.info("contact %s of %s is %s", binding.uri, binding.aor,
                         "reachable" if alive else "unreachable")  # fmt: skip
                if alive:
                    self.messaging.registered(binding.aor)  # the messages that waited
            self.location.mark(binding, alive)

        self.endpoint.send_request(request, dest, answered)


def _start_kernel_relay(kernel: KernelRelay) -> None:
    """Start forwarding relayed calls in the kernel, or say in the log why it cannot."""
    problem = kernel.start()
    if problem is not None:
        log.error("media.relay: kernel: %s; RTP is relayed by ipbx", problem)
    elif not kernel.forwarding:
        log.warning("media.relay: kernel: IP forwarding is off (sysctl "
                    "net.ipv4.ip_forward=1 turns it on): the kernel forwards only between "
                    "phones on this machine's loopback")  # fmt: skip


def _say_media_address(sdp_address: str | None, media: MediaConfig) -> None:
    if sdp_address is not None:
        log.info("SDP carries %s; RTP on %s ports %d-%d", sdp_address,
                 media.address, *media.rtp_ports)  # fmt: skip
        return
    default = route_source(DEFAULT_ROUTE_PROBE)
    loopback = default in ("127.0.0.1", "::1")
    route = "no default route" if loopback else f"{default} on the default route"
    log.info("SDP carries the address each phone reaches SIP on (%s); RTP on "
             "every interface, ports %d-%d; set media.public_address when phones reach "
             "this machine through NAT", route, *media.rtp_ports)  # fmt: skip


def _every_interface(address: str) -> bool:
    return address in ("0.0.0.0", "::")


def _nat_modes(config: Config) -> dict[str, NatMode]:
    return {e.number: e.nat for e in config.extensions if e.nat != "auto"}


def _save_records(store: Store, records: Sequence[CallRecord]) -> None:
    try:
        store.save_call_records(records)
    except Exception:
        # One bad record must not cost the others: save them one by one.
        for record in records:
            try:
                store.save_call_records([record])
            except Exception:
                log.exception("call record %s could not be saved", record.call_id)


def _save_queue_log(store: Store, records: Sequence[QueueLogRecord]) -> None:
    try:
        store.save_queue_log(records)
    except Exception:
        log.exception("%d queue log events could not be saved", len(records))


_SDP_TYPES = frozenset({"application/sdp", "application/*", "*/*"})


def _one_contact(request: Request) -> None:
    """RFC 3261 §8.1.1.8, §12.1.1: the Contact is the caller's dialog target. Without
    one the call cannot be set up; found only when the callee answers, the callee was
    connected to a caller who never heard the 200. (Checked after authentication, so
    an RFC 2543 INVITE without Contact, RFC 4475 §3.4 inv2543, is challenged like any other.)"""
    if len(request.contacts) != 1:
        raise SipError(400, "an INVITE needs exactly one Contact")


def preferred_codecs(names: Sequence[str]) -> tuple[Codec, ...]:
    """The codecs of `media.codecs`, in its order, that this machine can run."""
    available = {codec.name.lower(): codec for codec in CODECS}
    missing = [name for name in names if name not in available]
    if missing:
        log.warning("codecs %s are not available here (G.729 needs libbcg729)", missing)
    chosen = tuple(available[name] for name in dict.fromkeys(names) if name in available)
    if not chosen:
        raise ValueError(f"none of media.codecs {names} is available")
    return chosen
