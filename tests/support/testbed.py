"""The PBX and its phones on one in-memory network, in virtual time: call flows tested
the way h11's ConnectionPair and aioquic's client_and_server() test a protocol, with
no socket, no subprocess and no sleep.

Writing a test::

    def test_a_busy_phone_gives_the_caller_486(tmp_path: Path) -> None:
        async def story(lab: Testbed) -> None:
            alice, bob = await lab.registered("1000"), await lab.registered("1001")
            call = alice.call("1001")
            ringing = await bob.rings()
            ringing.refuse(486)
            assert (await call.final()).status == 486

        play(tmp_path, story)

- `play(tmp_path, story, edit)` builds the configuration (extensions 1000-1003 with
  passwords `secret<number>`, data in `tmp_path/data`), lets `edit` change it as a
  YAML mapping, starts the PBX at 10.0.0.1:5060 and runs `story` on a VirtualTimeLoop
  (tests/support/clock.py): waiting costs no real time, so a 20 s no-answer forward or
  a trunk's Timer B runs in milliseconds. The PBX is stopped afterwards, and the test
  fails if it logged an error. When the story fails, the ladder of every datagram
  exchanged is printed (pytest shows it with the failure).
- `lab.phone(number)` / `await lab.registered(number)`: a Phone (tests/support/
  user_agents.py) on the next free address 10.0.0.11, .12 ...; a number may have several.
  `lab.gateway(host, caller)`: a provider's side of a trunk at HOST:5060 (write the
  same host in the trunk's configuration), its calls from `caller` ("gw" by default).
- A phone's `call(number)` returns an OutgoingCall (`provisional()`, `final()`,
  `cancel()`); `rings()` returns the next IncomingCall (`ring()`, `answer()`,
  `refuse(status)`, `challenge()`, `was_cancelled()`, `rings_unanswered()`);
  `rings_not(seconds)` says none came. Either side, once answered: `hold()`,
  `resume()`, `refer(uri)`, `hang_up()` (each returns the final response),
  `received(method)`, `hung_up()`, `replaces()`.
  `await connected(caller, callee)` sets a call up; `direction(message)` reads the SDP.
- Every wait is bounded (40 virtual seconds, past any SIP transaction time-out) and
  fails with what did arrive; none costs real time.
- `lab.network.lose(rule)` drops datagrams (a lost 100 Trying, say);
  `lab.network.sent` is everything sent; `await lab.records()` the call records written;
  `lab.pbx` is the PBX object itself.

Media is not in memory: the PBX's media endpoints bind UDP sockets on 127.0.0.1 as in
production, but no phone sends RTP, and their SDP points at the discard port.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ipbx.config import Config
from ipbx.pbx.core import Pbx
from ipbx.sip.transaction import Address
from ipbx.store import CallRecord, Store
from tests.support.clock import run_in_virtual_time
from tests.support.network import Network
from tests.support.user_agents import Phone

PBX_ADDRESS = Address("UDP", "10.0.0.1", 5060)
EXTENSIONS = ("1000", "1001", "1002", "1003")
FIRST_PHONE_HOST = 11


def base_config(data_dir: Path) -> dict[str, Any]:
    """The configuration every story starts from, as the YAML file would hold it."""
    return {
        "data_dir": str(data_dir),
        # No listener: the testbed attaches the PBX to the in-memory network instead.
        "sip": {"listen": [], "realm": "ipbx"},
        # RTP on loopback: the phones' media are real sockets on this machine.
        "media": {"address": "127.0.0.1"},
        "extensions": [{"number": n, "password": f"secret{n}"} for n in EXTENSIONS],
    }


@dataclass
class Testbed:
    __test__ = False  # not a test class, whatever pytest thinks of its name

    network: Network
    pbx: Pbx
    config: Config
    phones: list[Phone] = field(default_factory=list)

    def phone(self, number: str) -> Phone:
        """A phone of extension `number` (not registered yet) on the next address."""
        extension = next(e for e in self.config.extensions if e.number == number)
        host = f"10.0.0.{FIRST_PHONE_HOST + len(self.phones)}"
        return self._add(Phone(self.network, Address("UDP", host, 5060), PBX_ADDRESS,
                               number, extension.password))  # fmt: skip

    async def registered(self, number: str) -> Phone:
        phone = self.phone(number)
        response = await phone.register()
        assert response.status == 200, response
        return phone

    def gateway(self, host: str, caller: str = "gw") -> Phone:
        """A provider's SIP side at `host`:5060, which a trunk points at; the calls it
        places come from `caller` (a number of the phone network)."""
        return self._add(Phone(self.network, Address("UDP", host, 5060), PBX_ADDRESS, caller))

    def _add(self, phone: Phone) -> Phone:
        self.phones.append(phone)
        return phone

    async def records(self) -> list[CallRecord]:
        """The call records of the calls ended so far, oldest first, once the PBX has
        written them (it writes behind, every 0.1 s)."""
        await asyncio.sleep(0.5)
        return list(reversed(await self.pbx.store.run(Store.call_records)))


Story = Callable[[Testbed], Awaitable[None]]


def play(
    tmp_path: Path,
    story: Story,
    edit: Callable[[dict[str, Any]], None] | None = None,
) -> None:
    """Run `story` against a PBX configured by `edit` (see the module's docstring)."""
    settings = base_config(tmp_path / "data")
    if edit is not None:
        edit(settings)
    # No media worker, whatever the story's media section: virtual time runs in this
    # process only.
    settings.setdefault("media", {})["workers"] = 0
    config = Config.model_validate(settings)
    errors = _ErrorLog()
    logging.getLogger("ipbx").addHandler(errors)
    try:
        run_in_virtual_time(_run(config, story))
    finally:
        logging.getLogger("ipbx").removeHandler(errors)
    assert not errors.messages, f"the PBX logged errors: {errors.messages}"


async def _run(config: Config, story: Story) -> None:
    store = Store(config.store_url)
    store.migrate()
    store.apply_extensions(
        [(e.number, e.name, e.password) for e in config.extensions], config.sip.realm
    )
    network = Network()
    pbx = Pbx(config, store)
    network.attach(pbx.endpoint, PBX_ADDRESS)
    lab = Testbed(network, pbx, config)
    try:
        await pbx.start()
        try:
            await story(lab)
        except BaseException:
            print(f"--- what went over the network:\n{network.ladder()}")
            raise
    finally:
        await pbx.stop()
        for phone in lab.phones:
            await phone.close()
        pbx.store.close()
        store.close()


class _ErrorLog(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())
