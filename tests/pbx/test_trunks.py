"""Trunk registration (RFC 3261 §10.2 as a UAC, digest, 423, refresh, back-off, RFC 3263
failover), OPTIONS health, channel limits and inbound trust, against a small provider
on loopback built from our own UAS half (the Kamailio interop test is the real peer)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

from ipbx.pbx.trunk_config import TrunkConfig
from ipbx.pbx.trunks import Health, Registration, Trunks, format_state
from ipbx.sip.auth import DigestAuthenticator, Verdict, ha1
from ipbx.sip.message import Request
from ipbx.sip.transaction import Address, ServerTransaction, Timers
from ipbx.sip.transport.endpoint import SipEndpoint

LOOPBACK = "127.0.0.1"
REALM = "provider.example"
T1 = 0.02  # an unanswered transaction fails after 64*T1 = 1.28 s


class Provider:
    """A registrar that challenges, checks the password and grants `grant` seconds."""

    def __init__(self, password: str = "trunksecret", grant: int = 120) -> None:
        self.password = password
        self.grant = grant
        self.min_expires: int | None = None
        self.digest = DigestAuthenticator(REALM, algorithms=("MD5",))
        self.requests: list[Request] = []
        self.endpoint: SipEndpoint | None = None
        self.port = 0

    async def start(self, port: int = 0) -> Provider:
        self.endpoint = SipEndpoint(self, timers=Timers(t1=T1))
        self.port = (await self.endpoint.listen("udp", LOOPBACK, port)).port
        return self

    async def stop(self) -> None:
        assert self.endpoint is not None
        await self.endpoint.close()

    def registers(self) -> list[Request]:
        return [r for r in self.requests if r.method == "REGISTER"]

    def on_request(self, request: Request, source: Address, tx: ServerTransaction | None) -> None:
        assert tx is not None and self.endpoint is not None
        self.requests.append(request)
        if request.method == "OPTIONS":
            self.endpoint.reply(tx, 200)
            return
        now = time.time()
        creds = self.digest.credentials(request.headers.get_all("Authorization"))
        verdict = self.digest.verify(
            creds, "REGISTER", lambda alg: ha1("ipbx", REALM, self.password, alg), now
        )
        if verdict is not Verdict.OK:
            stale = verdict is Verdict.STALE
            challenges = self.digest.challenges(now, stale=stale)
            self.endpoint.reply(tx, 401, headers=[("WWW-Authenticate", c) for c in challenges])
            return
        expires = request.expires or 0
        if self.min_expires is not None and 0 < expires < self.min_expires:
            self.endpoint.reply(tx, 423, headers=[("Min-Expires", str(self.min_expires))])
            return
        contact = request.contacts[0].uri
        granted = min(expires, self.grant)
        self.endpoint.reply(tx, 200, headers=[("Contact", f"<{contact}>;expires={granted}")])

    def on_cancel(self, tx: ServerTransaction) -> None:
        pass

    def on_no_ack(self, tx: ServerTransaction) -> None:
        pass


class _Quiet:
    def on_request(self, request: Request, source: Address, tx: ServerTransaction | None) -> None:
        pass

    def on_cancel(self, tx: ServerTransaction) -> None:
        pass

    def on_no_ack(self, tx: ServerTransaction) -> None:
        pass


def trunk_config(*hosts: str | int, **fields: Any) -> TrunkConfig:
    values: dict[str, Any] = {
        "name": "provider1",
        "host": [h if isinstance(h, str) else f"{LOOPBACK}:{h}" for h in hosts],
        "username": "ipbx",
        "password": "trunksecret",
        "register": True,
        "options_interval": 0,
        "retry_interval": 0.2,
        "retry_max": 1.0,
    }
    values.update(fields)
    return TrunkConfig.model_validate(values)


async def ipbx_endpoint() -> SipEndpoint:
    endpoint = SipEndpoint(_Quiet(), timers=Timers(t1=T1))
    await endpoint.listen("udp", LOOPBACK, 0)
    return endpoint


async def until(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


async def drive(
    tmp_path: Path,
    configs: list[TrunkConfig],
    body: Callable[[Trunks], Awaitable[None]],
) -> None:
    """Start the trunks on an endpoint of their own, run `body`, stop them."""
    endpoint = await ipbx_endpoint()
    trunks = Trunks(configs, endpoint, tmp_path)
    await trunks.start()
    try:
        await asyncio.wait_for(body(trunks), 20)
    finally:
        await trunks.stop()
        await endpoint.close()


def with_provider(
    provider: Provider, test: Callable[[Provider], Coroutine[Any, Any, None]]
) -> Callable[[], Coroutine[Any, Any, None]]:
    async def main() -> None:
        await provider.start()
        try:
            await test(provider)
        finally:
            await provider.stop()

    return main


def test_registers_with_digest_and_unregisters_at_stop(tmp_path: Path) -> None:
    provider = Provider()

    async def test(provider: Provider) -> None:
        async def body(trunks: Trunks) -> None:
            trunk = trunks.get("provider1")
            assert trunk is not None
            await until(lambda: trunk.registration is Registration.REGISTERED)
            assert trunk.up and trunk.server == Address("UDP", LOOPBACK, provider.port)
            assert trunk.registered_until is not None
            assert 110 < trunk.registered_until - time.time() <= 120
            # Refresh scheduled at the granted expiry minus the margin.
            assert trunk.next_attempt is not None
            assert 80 < trunk.next_attempt - time.time() <= 90
            first, second = provider.registers()
            assert "Authorization" not in first.headers
            assert 'username="ipbx"' in (second.headers.get("Authorization") or "")
            assert str(second.uri) == f"sip:{LOOPBACK}:{provider.port}"
            assert second.to.uri.user == "ipbx" and second.contacts[0].uri.user == "ipbx"
            assert first.call_id == second.call_id and second.cseq.number > first.cseq.number
            await until(lambda: (tmp_path / "trunks.json").exists())
            await asyncio.sleep(0.3)
            state = json.loads((tmp_path / "trunks.json").read_text())
            assert state["trunks"][0]["registration"] == "registered"
            code, text = format_state(tmp_path)
            assert code == 0 and "provider1  registered" in text, text

        await drive(tmp_path, [trunk_config(provider.port)], body)
        last = provider.registers()[-1]
        assert last.expires == 0 and "Authorization" in last.headers
        state = json.loads((tmp_path / "trunks.json").read_text())
        assert state["pid"] is None
        assert state["trunks"][0]["registration"] == "unregistered"

    asyncio.run(with_provider(provider, test)())


def test_a_refused_password_fails_with_the_reason_and_backs_off(tmp_path: Path) -> None:
    provider = Provider(password="another")

    async def test(provider: Provider) -> None:
        async def body(trunks: Trunks) -> None:
            trunk = trunks.get("provider1")
            assert trunk is not None
            delays = []
            for failures in (1, 2, 3):
                await until(lambda n=failures: trunk.failures == n)
                assert trunk.registration is Registration.FAILED and not trunk.up
                assert trunk.reason == "401 Unauthorized: credentials refused"
                assert trunk.next_attempt is not None
                delays.append(trunk.next_attempt - time.time())
            # 0.2 s doubling, jittered down by up to 20 %, capped at retry_max (1 s).
            assert 0.1 < delays[0] < 0.21 and 0.25 < delays[1] < 0.41 and delays[2] < 0.81
            assert delays[0] < delays[1] < delays[2]

        await drive(tmp_path, [trunk_config(provider.port)], body)

    asyncio.run(with_provider(provider, test)())


def test_interval_too_brief_is_answered_with_min_expires(tmp_path: Path) -> None:
    provider = Provider(grant=3600)
    provider.min_expires = 600

    async def test(provider: Provider) -> None:
        async def body(trunks: Trunks) -> None:
            trunk = trunks.get("provider1")
            assert trunk is not None
            await until(lambda: trunk.registration is Registration.REGISTERED)
            assert provider.registers()[-1].expires == 600

        await drive(tmp_path, [trunk_config(provider.port, expires=60)], body)

    asyncio.run(with_provider(provider, test)())


def test_registration_is_refreshed_before_it_expires(tmp_path: Path) -> None:
    provider = Provider(grant=2)  # refresh at max(2 - 30, 2 / 2) = 1 s

    async def test(provider: Provider) -> None:
        async def body(trunks: Trunks) -> None:
            await until(lambda: len(provider.registers()) >= 4, timeout=3)
            registers = provider.registers()
            assert {r.call_id for r in registers} == {registers[0].call_id}
            cseqs = [r.cseq.number for r in registers]
            assert cseqs == sorted(set(cseqs))
            # The refresh reuses the nonce: credentials go out with the first request.
            assert "Authorization" in registers[2].headers

        await drive(tmp_path, [trunk_config(provider.port)], body)

    asyncio.run(with_provider(provider, test)())


def test_a_dead_first_host_fails_over_to_the_next(tmp_path: Path) -> None:
    provider = Provider()

    async def test(provider: Provider) -> None:
        async def body(trunks: Trunks) -> None:
            trunk = trunks.get("provider1")
            assert trunk is not None
            await until(lambda: trunk.registration is Registration.REGISTERED)
            assert trunk.server is not None and trunk.server.port == provider.port

        dead = await Provider().start()
        dead_port = dead.port
        await dead.stop()
        await drive(tmp_path, [trunk_config(dead_port, provider.port)], body)

    asyncio.run(with_provider(provider, test)())


def test_a_provider_that_does_not_answer_fails_then_recovers(tmp_path: Path) -> None:
    async def main() -> None:
        parked = await Provider().start()
        port = parked.port
        await parked.stop()  # nothing listens on `port` until the provider comes up

        async def body(trunks: Trunks) -> None:
            trunk = trunks.get("provider1")
            assert trunk is not None
            await until(lambda: trunk.registration is Registration.FAILED)
            assert trunk.reason.startswith("408 Request Timeout")
            provider = await Provider().start(port)
            try:
                await until(lambda: trunk.registration is Registration.REGISTERED, timeout=8)
                assert trunk.failures == 0 and trunk.reason == ""
            finally:
                await trunks.stop()
                await provider.stop()

        endpoint = await ipbx_endpoint()
        trunks = Trunks([trunk_config(port)], endpoint, tmp_path)
        await trunks.start()
        try:
            await asyncio.wait_for(body(trunks), 20)
        finally:
            await endpoint.close()

    asyncio.run(main())


def test_options_health_marks_an_ip_trunk_up_and_down(tmp_path: Path) -> None:
    async def main() -> None:
        provider = await Provider().start()
        endpoint = await ipbx_endpoint()
        config = trunk_config(provider.port, register=False, options_interval=0.2)
        trunks = Trunks([config], endpoint, tmp_path)
        await trunks.start()
        trunk = trunks.get("provider1")
        assert trunk is not None and trunk.registration is Registration.NONE
        try:
            await until(lambda: trunk.health is Health.UP)
            assert trunks.candidates(["provider1"]) == [trunk]
            await provider.stop()
            await until(lambda: trunk.health is Health.DOWN)
            assert not trunk.up and trunks.candidates(["provider1"]) == []
            assert any(r.method == "OPTIONS" for r in provider.requests)
        finally:
            await trunks.stop()
            await endpoint.close()

    asyncio.run(main())


def test_channels_are_limited_and_failover_skips_a_full_trunk(tmp_path: Path) -> None:
    async def body(trunks: Trunks) -> None:
        first, second = trunks.get("provider1"), trunks.get("provider2")
        assert first is not None and second is not None
        slots = [first.acquire(), first.acquire()]
        assert all(slots) and first.acquire() is None and first.full
        assert trunks.candidates(["provider1", "provider2"]) == [second]
        assert slots[0] is not None
        slots[0].release()
        slots[0].release()  # twice is harmless
        assert first.channels == 1
        assert trunks.candidates(["provider1", "provider2", "unknown"]) == [first, second]

    asyncio.run(
        drive(
            tmp_path,
            [
                trunk_config(5070, register=False, max_channels=2),
                trunk_config(5072, name="provider2", register=False),
            ],
            body,
        )
    )


def test_inbound_trust_by_allow_from_and_host_addresses(tmp_path: Path) -> None:
    async def body(trunks: Trunks) -> None:
        def source(host: str, port: int, transport: str = "UDP") -> str | None:
            trunk = trunks.trunk_for_source(Address(transport, host, port))
            return None if trunk is None else trunk.name

        # Both trunks are on 127.0.0.1: the port tells them apart.
        assert source(LOOPBACK, 5070) == "provider1"
        assert source(LOOPBACK, 5072) == "provider2"
        assert source(LOOPBACK, 5099) is None  # a phone, or a scanner
        assert source("192.0.2.77", 40000) == "provider2"  # allow_from network, any port
        assert source("198.51.100.1", 5060) is None
        assert source("::1", 5070) is None
        # Over TCP the source port is ephemeral: the address alone identifies the peer.
        assert source(LOOPBACK, 45678, "TCP") in ("provider1", "provider2")

    asyncio.run(
        drive(
            tmp_path,
            [
                trunk_config(5070, register=False),
                trunk_config(5072, name="provider2", register=False, allow_from=["192.0.2.0/24"]),
            ],
            body,
        )
    )


def test_caller_id_headers_follow_the_trunk_options(tmp_path: Path) -> None:
    async def body(trunks: Trunks) -> None:
        plain, strict = trunks.get("provider1"), trunks.get("provider2")
        assert plain is not None and strict is not None
        assert plain.caller_headers("+15550100", "Sales") == [
            ("From", f'"Sales" <sip:+15550100@{LOOPBACK}:5070>')
        ]
        assert strict.caller_headers("+15550100") == [
            ("From", "<sip:account7@carrier.example>"),
            ("P-Asserted-Identity", "<sip:+15550100@carrier.example>"),
            ("Remote-Party-ID", "<sip:+15550100@carrier.example>;party=calling;screen=yes"),
        ]
        assert str(plain.request_uri("+12125551234")) == f"sip:+12125551234@{LOOPBACK}:5070"
        assert str(strict.request_uri("911")) == "sip:911@carrier.example;transport=tcp"

    asyncio.run(
        drive(
            tmp_path,
            [
                trunk_config(5070, register=False),
                trunk_config(
                    5072,
                    name="provider2",
                    register=False,
                    transport="tcp",
                    domain="carrier.example",
                    from_user="account7",
                    pai=True,
                    rpid=True,
                ),
            ],
            body,
        )
    )
