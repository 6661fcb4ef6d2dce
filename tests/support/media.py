"""What media tests share: a scenario run on its own event loop (uvloop, as in
production, or asyncio) within 10 s unless told, and the loudest frequency of 8 kHz audio."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import numpy as np
import uvloop


def run(scenario: Callable[[], Awaitable[None]], loop: str = "uvloop", timeout: float = 10) -> None:
    factory = uvloop.new_event_loop if loop == "uvloop" else asyncio.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(asyncio.wait_for(scenario(), timeout))


def dominant_frequency(pcm: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(pcm.astype(np.float64)))
    return float(np.fft.rfftfreq(len(pcm), 1 / 8000)[np.argmax(spectrum)])
