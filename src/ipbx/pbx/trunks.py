"""SIP trunks: registration to providers, health checks, channel limits, inbound trust.

A trunk is either registration-based (we REGISTER to the provider with digest
credentials, RFC 3261 §10.2, and refresh before the granted expiry) or IP-based (the
provider's addresses are trusted). Each trunk runs up to two asyncio loops, in the
manner of Asterisk's outbound registrations and `qualify`:

- registration: unregistered -> registering -> registered, refreshed at the granted
  expiry minus a margin; on failure (a final error, a rejected password, no answer)
  `failed` with the reason and the time of the next attempt, the delay doubling from
  `retry_interval` up to `retry_max` (jittered, so many trunks do not retry in step);
- OPTIONS health check every `options_interval`: any answer but 408/503 means up.

Servers are located by RFC 3263 (sip/transport/resolve.py) before each attempt and
tried in order; 408 and 503 move on to the next (RFC 3263 §4.3). Every state change is
written to DATA_DIR/trunks.json, which `ipbx trunks` reads (docs/trunks.md).
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import os
import random
import secrets
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from ipbx.pbx.trunk_config import TrunkConfig
from ipbx.sip.auth import answer_challenge, authorization, is_stale, pick_challenge
from ipbx.sip.errors import SipError
from ipbx.sip.message import Headers, Request, Response
from ipbx.sip.transaction import Address
from ipbx.sip.transport.endpoint import SipEndpoint
from ipbx.sip.transport.resolve import Lookup, ResolveError, Resolver, is_numeric, split_host_port
from ipbx.sip.uri import Uri, parse_uri, quoted_string

log = logging.getLogger("ipbx.trunks")

STATE_FILE = "trunks.json"
# Refresh this long before the granted expiry (RFC 3261 §10.2.4 leaves the margin to
# us; Asterisk and baresip refresh well before), but never before half of it.
REFRESH_MARGIN = 30.0
UNREGISTER_TIMEOUT = 2.0
UNREACHABLE = frozenset({408, 503})  # RFC 3263 §4.3: try the next server


class Registration(Enum):
    NONE = "none"  # an IP trunk: nothing to register
    UNREGISTERED = "unregistered"
    REGISTERING = "registering"
    REGISTERED = "registered"
    FAILED = "failed"


class Health(Enum):
    UNKNOWN = "unknown"  # no OPTIONS sent (options_interval 0) or none answered yet
    UP = "up"
    DOWN = "down"


class RegistrationFailed(Exception):
    """One registration attempt failed; the message is the reason shown to operators."""


class _Unreachable(RegistrationFailed):
    """No usable answer from one server (408 or 503): the next server may do better."""


@dataclass(frozen=True, slots=True)
class TrunkStatus:
    """What `ipbx trunks` shows of one trunk; times are Unix epoch seconds."""

    name: str
    registration: str
    reason: str
    next_attempt: float | None
    registered_until: float | None
    health: str
    available: bool
    channels: int
    max_channels: int | None
    server: str


class ChannelSlot:
    """One call's hold on a trunk channel; `release()` is safe to call twice."""

    def __init__(self, trunk: Trunk) -> None:
        self.trunk = trunk
        self.released = False

    def release(self) -> None:
        if not self.released:
            self.released = True
            self.trunk._release()


@dataclass(frozen=True, slots=True)
class _Peer:
    network: ipaddress.IPv4Network | ipaddress.IPv6Network
    port: int | None  # None: any source port


class Trunk:
    def __init__(
        self,
        config: TrunkConfig,
        endpoint: SipEndpoint,
        resolver: Resolver,
        on_change: Callable[[Trunk], None] = lambda trunk: None,
    ) -> None:
        self.config = config
        self.name = config.name
        self.endpoint = endpoint
        self.resolver = resolver
        self.on_change = on_change
        self.domain = config.domain or config.host[0]
        self.registration = Registration.UNREGISTERED if config.registration else Registration.NONE
        self.reason = ""
        self.next_attempt: float | None = None
        self.registered_until: float | None = None
        self.health = Health.UNKNOWN
        self.channels = 0
        self.failures = 0
        self.server: Address | None = None  # the server that last answered
        self._peers: list[_Peer] = []
        self._tasks: list[asyncio.Task[None]] = []
        # RFC 3261 §10.2.4: refreshes keep the Call-ID and raise the CSeq.
        self._call_id = f"trunk-{secrets.token_hex(8)}"
        self._cseq = 0
        self._challenge: tuple[str, str] | None = None  # (header name, challenge)
        self._nc = 0

    # --- state -------------------------------------------------------------------------------

    @property
    def up(self) -> bool:
        """Usable for calls: registered (when it registers) and not failing OPTIONS."""
        registered = self.registration in (Registration.NONE, Registration.REGISTERED)
        return registered and self.health is not Health.DOWN

    @property
    def full(self) -> bool:
        limit = self.config.max_channels
        return limit is not None and self.channels >= limit

    @property
    def available(self) -> bool:
        return self.up and not self.full

    def status(self) -> TrunkStatus:
        return TrunkStatus(
            self.name,
            self.registration.value,
            self.reason,
            self.next_attempt,
            self.registered_until,
            self.health.value,
            self.available,
            self.channels,
            self.config.max_channels,
            ""
            if self.server is None
            else f"{self.server.transport.lower()}:{self.server.host}:{self.server.port}",
        )

    def _set(
        self,
        registration: Registration | None = None,
        reason: str | None = None,
        health: Health | None = None,
    ) -> None:
        before = (self.registration, self.health)
        if registration is not None:
            self.registration = registration
        if reason is not None:
            self.reason = reason
        if health is not None:
            self.health = health
        if (self.registration, self.health) != before:
            log.info("trunk %s: %s%s, %s", self.name, self.registration.value,
                     f" ({self.reason})" if self.reason else "", self.health.value)  # fmt: skip
        self.on_change(self)

    # --- channels ----------------------------------------------------------------------------

    def acquire(self) -> ChannelSlot | None:
        """A channel for one call, or None when the trunk is at max_channels."""
        if self.full:
            return None
        self.channels += 1
        self.on_change(self)
        return ChannelSlot(self)

    def _release(self) -> None:
        self.channels = max(0, self.channels - 1)
        self.on_change(self)

    # --- addressing for calls ----------------------------------------------------------------

    def request_uri(self, number: str) -> Uri:
        """Where a call to `number` is addressed: sip:NUMBER@DOMAIN (transport param for
        stream transports, RFC 3261 §19.1.1)."""
        uri = parse_uri(f"sip:{number}@{self.domain}")
        if self.config.transport != "udp":
            uri = uri.with_params(transport=self.config.transport)
        return uri

    def caller_headers(self, caller_id: str, display: str | None = None) -> list[tuple[str, str]]:
        """From (without tag) and the identity headers this trunk wants for `caller_id`.

        `from_user` replaces the From user when the provider authenticates by it; the
        caller ID then travels in P-Asserted-Identity (RFC 3325) and/or Remote-Party-ID.
        """
        domain = self.config.from_domain or self.domain
        name = f"{quoted_string(display)} " if display else ""
        identity = f"{name}<sip:{caller_id}@{domain}>"
        user = self.config.from_user or caller_id
        headers = [("From", f"{name}<sip:{user}@{domain}>")]
        if self.config.pai:
            headers.append(("P-Asserted-Identity", identity))
        if self.config.rpid:
            headers.append(("Remote-Party-ID", f"{identity};party=calling;screen=yes"))
        return headers

    def answer_challenge(self, response: Response, method: str, uri: str) -> tuple[str, str] | None:
        """The header that answers a provider's 401/407 to a request we sent through this
        trunk (RFC 3261 §22.2), with its credentials; None without usable ones."""
        config = self.config
        if config.username is None or config.password is None:
            return None
        return answer_challenge(response, method, uri, config.username, config.password)

    async def targets(self) -> list[Address]:
        """The servers to send to, in RFC 3263 order (the outbound proxy when set)."""
        transport = self.config.transport
        entries = [self.config.outbound_proxy] if self.config.outbound_proxy else self.config.host
        found: list[Address] = []
        for entry in entries:
            host, port = split_host_port(entry)
            try:
                found += await self.resolver.resolve(Lookup(host, port, transport))
            except ResolveError as exc:
                log.info("trunk %s: %s", self.name, exc)
        return found

    # --- inbound trust -----------------------------------------------------------------------

    def match(self, source: Address) -> int:
        """How well `source` is one of this trunk's peers: 2 address and port, 1 address
        (entries written without a port, and stream transports, whose source ports are
        ephemeral), 0 not at all."""
        try:
            address = ipaddress.ip_address(source.host)
        except ValueError:
            return 0
        best = 0
        for peer in self._peers:
            if address in peer.network:
                if peer.port is None or source.reliable:
                    best = max(best, 1)
                elif peer.port == source.port:
                    return 2
        return best

    async def _resolve_peers(self) -> None:
        entries = [*self.config.allow_from, *self.config.host]
        if self.config.outbound_proxy:
            entries.append(self.config.outbound_proxy)
        peers: list[_Peer] = []
        for entry in entries:
            if "/" in entry:
                peers.append(_Peer(ipaddress.ip_network(entry, strict=False), None))
                continue
            host, port = split_host_port(entry)
            if is_numeric(host):
                addresses = [host]
            else:
                lookup = Lookup(host, port, self.config.transport)
                try:
                    addresses = [a.host for a in await self.resolver.resolve(lookup)]
                except ResolveError as exc:
                    log.warning("trunk %s: peer %s: %s", self.name, entry, exc)
                    continue
            peers += [_Peer(ipaddress.ip_network(a), port) for a in addresses]
        self._peers = peers

    # --- running -----------------------------------------------------------------------------

    async def start(self) -> None:
        await self._resolve_peers()
        if self.config.registration:
            self._tasks.append(asyncio.create_task(self._registration_loop()))
        if self.config.options_interval > 0:
            self._tasks.append(asyncio.create_task(self._health_loop()))
        self.on_change(self)

    async def stop(self) -> None:
        """Stop the loops; a registered trunk un-REGISTERs (Expires: 0) first."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self.registration is Registration.REGISTERED and self.server is not None:
            try:
                await asyncio.wait_for(self._register_at(self.server, 0), UNREGISTER_TIMEOUT)
                log.info("trunk %s: unregistered", self.name)
            except (RegistrationFailed, TimeoutError) as exc:
                log.info("trunk %s: un-REGISTER: %s", self.name, str(exc) or "no answer")
        if self.config.registration:
            self.registered_until = self.next_attempt = None
            self._set(Registration.UNREGISTERED, "stopped")

    async def _registration_loop(self) -> None:
        while True:
            self.next_attempt = None
            self._set(Registration.REGISTERING)
            try:
                granted = await self._register(self.config.expires)
            except Exception as exc:
                if not isinstance(exc, RegistrationFailed):
                    log.exception("trunk %s: registration attempt failed", self.name)
                self.failures += 1
                delay = min(
                    self.config.retry_interval * 2 ** (self.failures - 1), self.config.retry_max
                ) * random.uniform(0.8, 1.0)
                self.registered_until = None
                self.next_attempt = time.time() + delay
                log.warning("trunk %s: registration failed: %s; next attempt in %.0f s",
                            self.name, exc, delay)  # fmt: skip
                self._set(Registration.FAILED, str(exc))
                await asyncio.sleep(delay)
                continue
            self.failures = 0
            refresh = max(granted - REFRESH_MARGIN, granted / 2)
            now = time.time()
            self.registered_until = now + granted
            self.next_attempt = now + refresh
            self._set(Registration.REGISTERED, "")
            await asyncio.sleep(refresh)

    async def _register(self, expires: int) -> int:
        """One registration over the servers in order; the granted expiry in seconds."""
        targets = await self.targets()
        if not targets:
            raise RegistrationFailed(f"cannot resolve {', '.join(self.config.host)}")
        failure: RegistrationFailed | None = None
        for target in targets:
            try:
                granted = await self._register_at(target, expires)
            except _Unreachable as exc:
                failure = exc
                continue
            self.server = target
            return granted
        assert failure is not None
        raise failure

    async def _register_at(self, target: Address, expires: int) -> int:
        """REGISTER at one server, answering digest challenges and 423 (RFC 3261 §10.3)."""
        challenges = 0
        for _ in range(5):
            response = await self.transact(self._register_request(target, expires), target)
            status = response.status
            if 200 <= status < 300:
                return self._granted(response, expires)
            if status in (401, 407):
                challenges += 1
                header = "WWW-Authenticate" if status == 401 else "Proxy-Authenticate"
                challenge = pick_challenge(response.headers.get_all(header))
                stale = challenge is not None and is_stale(challenge)
                if challenge is None or (challenges > 1 and not stale):
                    self._challenge = None
                    raise RegistrationFailed(f"{status} {response.reason}: credentials refused")
                answer = "Authorization" if status == 401 else "Proxy-Authorization"
                self._challenge = (answer, challenge)
                self._nc = 0
                continue
            if status == 423:
                minimum = response.headers.get("Min-Expires")
                if minimum is None or not minimum.strip().isdigit():
                    raise RegistrationFailed("423 without a usable Min-Expires")
                expires = max(expires, int(minimum))
                continue
            if status in UNREACHABLE:
                raise _Unreachable(f"{status} {response.reason} from {target.host}:{target.port}")
            raise RegistrationFailed(f"{status} {response.reason}")
        raise RegistrationFailed("too many challenges")

    def _register_request(self, target: Address, expires: int) -> Request:
        config = self.config
        self._cseq += 1
        uri = parse_uri(f"sip:{self.domain}")
        aor = f"<sip:{config.username}@{self.domain}>"
        try:
            contact = self.endpoint.contact(target, config.username)
        except SipError as exc:
            raise RegistrationFailed(exc.reason) from None
        headers = Headers()
        headers.add("Max-Forwards", "70")
        headers.add("From", f"{aor};tag={secrets.token_hex(5)}")
        headers.add("To", aor)
        headers.add("Call-ID", self._call_id)
        headers.add("CSeq", f"{self._cseq} REGISTER")
        headers.add("Contact", f"<{contact}>")
        headers.add("Expires", str(expires))
        if self._challenge is not None:
            name, challenge = self._challenge
            self._nc += 1
            assert config.username is not None and config.password is not None
            headers.add(
                name,
                authorization(
                    challenge, "REGISTER", str(uri), config.username, config.password, self._nc
                ),
            )
        return Request(headers, b"", "REGISTER", uri)

    def _granted(self, response: Response, requested: int) -> int:
        """The expiry the registrar granted our contact (RFC 3261 §10.2.4): its Contact's
        expires parameter, else the Expires header, else what we asked for."""
        user = self.config.username
        try:
            for contact in response.contacts:
                if contact.uri.user == user and "expires" in contact.params:
                    value = contact.params["expires"] or ""
                    if value.isdigit():
                        return int(value)
            header = response.expires
        except SipError:
            header = None
        return requested if header is None else header

    async def _health_loop(self) -> None:
        while True:
            self._set(health=Health.UP if await self._ping() else Health.DOWN)
            await asyncio.sleep(self.config.options_interval)

    async def _ping(self) -> bool:
        for target in await self.targets():
            try:
                local = self.endpoint.local_address(target)
            except SipError:
                continue
            headers = Headers()
            headers.add("Max-Forwards", "70")
            headers.add("From", f"<sip:ipbx@{local.host}>;tag={secrets.token_hex(5)}")
            headers.add("To", f"<sip:{self.domain}>")
            headers.add("Call-ID", f"trunk-options-{secrets.token_hex(8)}")
            headers.add("CSeq", "1 OPTIONS")
            request = Request(headers, b"", "OPTIONS", parse_uri(f"sip:{self.domain}"))
            response = await self.transact(request, target)
            if response.status not in UNREACHABLE:
                return True
        return False

    async def transact(self, request: Request, target: Address) -> Response:
        """Send in a client transaction; its final response (a timeout is a 408)."""
        future: asyncio.Future[Response] = asyncio.get_running_loop().create_future()

        def answered(response: Response, _tx: object) -> None:
            if response.status >= 200 and not future.done():
                future.set_result(response)

        self.endpoint.send_request(request, target, answered)
        return await future


class Trunks:
    """Every trunk of the configuration, and the state file `ipbx trunks` reads."""

    def __init__(
        self,
        configs: Sequence[TrunkConfig],
        endpoint: SipEndpoint,
        data_dir: Path,
        resolver: Resolver | None = None,
    ) -> None:
        self.resolver = resolver or Resolver()
        self.state_path = data_dir / STATE_FILE
        self._endpoint = endpoint
        self._running = False
        self._trunks = {c.name: Trunk(c, endpoint, self.resolver, self._changed) for c in configs}
        self._write_pending: asyncio.TimerHandle | None = None

    def __iter__(self) -> Iterator[Trunk]:
        return iter(self._trunks.values())

    def __len__(self) -> int:
        return len(self._trunks)

    def get(self, name: str) -> Trunk | None:
        return self._trunks.get(name)

    def candidates(self, names: Sequence[str]) -> list[Trunk]:
        """The named trunks in failover order that can take a call now (up and below
        their channel limit). Acquire a channel on each before using it."""
        found = [self._trunks[n] for n in names if n in self._trunks]
        return [trunk for trunk in found if trunk.available]

    def trunk_for_source(self, source: Address) -> Trunk | None:
        """The trunk whose peer `source` is (address and port beat address alone)."""
        best: tuple[int, Trunk | None] = (0, None)
        for trunk in self._trunks.values():
            score = trunk.match(source)
            if score > best[0]:
                best = (score, trunk)
        return best[1]

    async def start(self) -> None:
        self._running = True
        if not self._trunks:
            return
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        for trunk in self._trunks.values():
            await trunk.start()
        self.write_state()

    async def stop(self) -> None:
        self._running = False
        if not self._trunks:
            return
        await asyncio.gather(*(trunk.stop() for trunk in self._trunks.values()))
        if self._write_pending is not None:
            self._write_pending.cancel()
        self.write_state(running=False)

    async def update(self, configs: Sequence[TrunkConfig]) -> None:
        """Take up a changed trunk list: a removed or changed trunk stops (it
        un-REGISTERs; its calls go on), a new or changed one starts."""
        wanted = {c.name: c for c in configs}
        going = [t for name, t in self._trunks.items() if wanted.get(name) != t.config]
        if self._running:
            await asyncio.gather(*(trunk.stop() for trunk in going))
        kept = {t.name: t for t in self._trunks.values() if t not in going}
        self._trunks = {
            name: kept.get(name) or Trunk(config, self._endpoint, self.resolver, self._changed)
            for name, config in wanted.items()
        }
        if not self._running:
            return
        for trunk in self._trunks.values():
            if trunk.name not in kept:
                await trunk.start()
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        self.write_state()

    def _changed(self, _trunk: Trunk) -> None:
        # Channel counts change with every call: coalesce writes to a few per second.
        if self._write_pending is None:
            self._write_pending = asyncio.get_running_loop().call_later(0.2, self.write_state)

    def write_state(self, running: bool = True) -> None:
        self._write_pending = None
        document: dict[str, Any] = {
            "pid": os.getpid() if running else None,
            "updated": time.time(),
            "trunks": [asdict(trunk.status()) for trunk in self._trunks.values()],
        }
        temporary = self.state_path.with_suffix(".tmp")
        try:
            temporary.write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
            os.replace(temporary, self.state_path)  # readers never see half a file
        except OSError as exc:
            log.warning("cannot write %s: %s", self.state_path, exc)


def read_state(data_dir: Path) -> tuple[dict[str, Any] | None, list[TrunkStatus]]:
    """The state file as `ipbx trunks` shows it: (header, one status per trunk)."""
    try:
        document = json.loads((data_dir / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None, []
    statuses = [TrunkStatus(**entry) for entry in document.get("trunks", [])]
    return document, statuses


def format_state(data_dir: Path, now: float | None = None) -> tuple[int, str]:
    """`ipbx trunks`: (exit status, text). 1 when no running server wrote the file."""
    document, statuses = read_state(data_dir)
    if document is None:
        return 1, f"no trunk state in {data_dir / STATE_FILE}: is ipbx serving with trunks?"
    now = time.time() if now is None else now
    rows = [("TRUNK", "REGISTRATION", "HEALTH", "CHANNELS", "SERVER", "DETAIL")]
    for s in statuses:
        detail = []
        if s.reason:
            detail.append(s.reason)
        if s.registered_until is not None:
            detail.append(f"expires in {max(0, s.registered_until - now):.0f} s")
        if s.next_attempt is not None:
            verb = "refresh" if s.registration == "registered" else "next attempt"
            detail.append(f"{verb} in {max(0, s.next_attempt - now):.0f} s")
        limit = "-" if s.max_channels is None else str(s.max_channels)
        rows.append(
            (
                s.name,
                s.registration,
                s.health,
                f"{s.channels}/{limit}",
                s.server or "-",
                "; ".join(detail),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False))
        + "  "
        + row[-1]
        for row in rows
    ]
    pid = document.get("pid")
    if not (isinstance(pid, int) and _alive(pid)):
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(document.get("updated", 0)))
        lines.append(f"(ipbx is not running: the states above are as of {stamp})")
        return 1, "\n".join(line.rstrip() for line in lines)
    return 0, "\n".join(line.rstrip() for line in lines)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
