"""The live feed of a running `ipbx serve`: a phone registering raises
registration.changed, and a message left in a mailbox raises voicemail.new."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from websockets.asyncio.client import connect

from tests.support.ports import LOOPBACK, free_port
from tests.support.server import extension_range, make_token, run_ipbx, write_config
from tests.support.sipclient import SipClient
from tests.support.softphone import ipbx_phone, write_tone

CALLER, OWNER = extension_range(2)


def test_registration_and_voicemail_events_reach_the_feed(tmp_path: Path) -> None:
    api_port = free_port("tcp")
    numbers = f'numbers:\n  - {{number: "600", destination: "voicemail:{OWNER.number}"}}\n'
    config, port = write_config(tmp_path, api_port, numbers, extensions=[CALLER, OWNER])
    text = config.read_text().replace(
        f'password: "{OWNER.password}"}}',
        f'password: "{OWNER.password}", voicemail: {{pin: "1234"}}}}',
    )
    config.write_text(text)
    token = make_token(config, "read")
    server = run_ipbx(tmp_path, config, port)
    tone = write_tone(tmp_path / "tone.wav", 700, 12)

    def call_the_mailbox() -> tuple[int, str]:
        with ipbx_phone(
            tmp_path, server.port, CALLER,
            "--call", "600", "--play", str(tone), "--duration", "10", "--timeout", "30",
        ) as caller:  # fmt: skip
            return caller.finish(timeout=40)

    async def scenario() -> list[dict[str, object]]:
        url = f"ws://{LOOPBACK}:{api_port}/events?token={token}&type=registration.*,voicemail.*"
        async with connect(url) as feed:
            phone = SipClient(server.port)
            assert phone.register(OWNER.number, OWNER.password) is not None
            phone.close()
            caller = await asyncio.to_thread(call_the_mailbox)
            assert caller[0] == 0
            events = []
            while len(events) < 2:
                events.append(json.loads(await asyncio.wait_for(feed.recv(), 15)))
            return events

    try:
        events = asyncio.run(scenario())
    finally:
        server.stop()
    registered, message = events
    assert registered["type"] == "registration.changed"
    assert registered["data"] == {"extension": OWNER.number, "registered": True, "contacts": 1}
    assert message["type"] == "voicemail.new"
    data = message["data"]
    assert isinstance(data, dict)
    assert (data["extension"], data["caller"]) == (OWNER.number, CALLER.number)
    assert float(data["duration"]) >= 1.0
