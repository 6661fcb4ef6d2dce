"""The asyncio timer that follows a sans-I/O deadline: it rings once, at the last deadline
set, with the loop's time."""

from __future__ import annotations

import asyncio

from ipbx.sip.transport.alarm import Alarm


def test_it_rings_at_the_last_deadline_set_and_not_after_a_cancel() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        rang: list[float] = []
        alarm = Alarm(loop, rang.append)
        start = loop.time()
        alarm.set(start + 0.2)
        alarm.set(start + 0.05)  # replaces the first
        await asyncio.sleep(0.3)
        # uvloop's clock counts whole milliseconds: "at 50 ms" may read 49.999... later.
        assert len(rang) == 1 and start + 0.049 <= rang[0] < start + 0.2
        alarm.set(loop.time() + 0.05)
        alarm.cancel()
        alarm.set(None)
        await asyncio.sleep(0.1)
        assert len(rang) == 1

    asyncio.run(scenario())
