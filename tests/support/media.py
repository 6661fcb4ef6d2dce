"""What media tests share: a scenario run on its own event loop (uvloop, as in
production, or asyncio) within 10 s unless told, with the media workers `make test` asks
for, and the loudest frequency of 8 kHz audio."""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager

import numpy as np
import uvloop

from ipbx.media.channel import ChannelPair
from ipbx.media.ports import PortPool
from ipbx.media.workers import MediaWorkers

# The port pools of the running test (tests/media's `pool` fixture): with
# IPBX_TEST_MEDIA_WORKERS=N, `run` gives them N media workers, so that what the test
# bridges with connect() is carried by worker processes.
POOLS: list[PortPool[ChannelPair]] = []


def media_workers() -> int | None:
    """The media workers `make test` asks for (IPBX_TEST_MEDIA_WORKERS), if it does."""
    setting = os.environ.get("IPBX_TEST_MEDIA_WORKERS")
    return None if setting is None else int(setting)


def loopback_pool() -> PortPool:
    """RTP ports on loopback in a random slice of 30000-39999: it keeps concurrently
    running test sessions off each other's ports, and MediaEndpoint.open also skips any
    port that turns out to be busy."""
    first = random.randrange(30000, 39800, 2)
    return PortPool("127.0.0.1", first, first + 199)


def run(scenario: Callable[[], Awaitable[None]], loop: str = "uvloop", timeout: float = 10) -> None:
    factory = uvloop.new_event_loop if loop == "uvloop" else asyncio.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(asyncio.wait_for(_with_workers(scenario), timeout))


async def _with_workers(scenario: Callable[[], Awaitable[None]]) -> None:
    count = media_workers()
    if not count or not POOLS:
        await scenario()
        return
    async with workers_for(POOLS, count):
        await scenario()


@asynccontextmanager
async def workers_for(
    pools: Sequence[PortPool[ChannelPair]], count: int
) -> AsyncIterator[MediaWorkers]:
    """`count` media workers that take over the bridges joined on `pools` at once (not
    after a second: in the middle of what a test sends)."""
    workers = MediaWorkers(count, pools[0].address)
    workers.move_after = 0
    await workers.start()
    for pool in pools:
        pool.offload = workers.offload
    try:
        yield workers
    finally:
        for pool in pools:
            pool.offload = None
        workers.close()


def dominant_frequency(pcm: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(pcm.astype(np.float64)))
    return float(np.fft.rfftfreq(len(pcm), 1 / 8000)[np.argmax(spectrum)])
