"""What every bench part is given and where it writes: the run's settings, progress on
stderr and one JSON line per figure on stdout."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Settings:
    users: int
    register_rates: list[int]
    call_rates: list[int]
    rtp_calls: list[int]
    relay_calls: list[int]
    transcode_calls: list[int]
    media_seconds: float
    api_rate: int
    api_seconds: float
    api_records: int
    rest_connections: int
    rest_seconds: float
    rest_requests: int
    memory_calls: int
    memory_rate: int
    memory_every: int
    memory_settle: float
    memory_rtp: float
    queue_callers: int
    queue_agents: int
    queue_relay: str
    queue_step: int
    queue_seconds: float
    webrtc_calls: list[int]
    webrtc_transcode_calls: list[int]
    webrtc_seconds: float
    conference_members: list[int]
    conference_small_rooms: list[int]
    loaded_media_calls: int
    loaded_worker_core: str
    loaded_relay: str
    parts: list[str]
    step_seconds: float
    out: Path
    server_cpu: int | None
    sipp_cpu: int | None


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def emit(record: dict[str, object]) -> None:
    print(json.dumps(record), flush=True)
