"""A recorded call over a bad network: 5 % random loss and 50 ± 40 ms of delay between
the phones and ipbx, injected by a UDP impairment proxy (tests/support/impairment.py) that
stands where ipbx's advertised media address is. The recording is concealed up to the
PLC limit, and the call record shows the loss and a lower MOS than a clean call."""

from __future__ import annotations

import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ipbx.media.jitter import JitterConfig
from ipbx.store import CallRecord
from tests.support.impairment import NONE, Impairment, ImpairmentProxy, loopback_alias
from tests.support.records import call_records
from tests.support.server import start_configured_ipbx
from tests.support.softphone import talk

# The clean call's jitter and the bad call's loss are measured on real time.
pytestmark = pytest.mark.alone

BAD_NETWORK = Impairment(loss=0.05, delay=0.050, jitter=0.040)
SECONDS = 8.0


def _impaired_call(workdir: Path, network: Impairment) -> tuple[CallRecord, np.ndarray]:
    """1000 (1 kHz) calls 1001 (700 Hz), whose calls are recorded, through `network`;
    the call record and the recording's samples (one column per side)."""
    alias = loopback_alias()

    def edit(config: dict[str, Any]) -> None:
        config["extensions"][1]["record"] = "always"
        config["media"]["public_address"] = alias

    server = start_configured_ipbx(workdir / "ipbx", edit)
    try:
        proxy = ImpairmentProxy(
            alias, server.rtp_range, to_server=network, to_phone=network, seed=5
        ).in_thread()
        with proxy:
            talk(server, workdir, SECONDS)
        assert proxy.stats["to_server"].forwarded > 2 * 0.9 * SECONDS * 50
        [record] = call_records(server)
    finally:
        server.stop()
    assert record.recording is not None
    with wave.open(str(server.data_dir / "recordings" / record.recording)) as wav:
        frames = wav.readframes(wav.getnframes())
        samples = np.frombuffer(frames, dtype="<i2").reshape(-1, wav.getnchannels())
    return record, samples


def _longest_silence_ms(pcm: np.ndarray, rate: int = 8000) -> float:
    """The longest run of silent 10 ms blocks between the first and last sound."""
    block = rate // 100
    peaks = np.abs(pcm[: len(pcm) // block * block].reshape(-1, block).astype(np.int32))
    loud = peaks.max(axis=1) > 1000
    first, last = int(np.argmax(loud)), len(loud) - int(np.argmax(loud[::-1]))
    longest = run = 0
    for is_loud in loud[first:last]:
        run = 0 if is_loud else run + 1
        longest = max(longest, run)
    return longest * 10.0


@pytest.fixture(scope="module")
def clean_call(tmp_path_factory: pytest.TempPathFactory) -> tuple[CallRecord, np.ndarray]:
    return _impaired_call(tmp_path_factory.mktemp("clean"), NONE)


@pytest.fixture(scope="module")
def bad_call(tmp_path_factory: pytest.TempPathFactory) -> tuple[CallRecord, np.ndarray]:
    return _impaired_call(tmp_path_factory.mktemp("bad"), BAD_NETWORK)


def test_the_recording_of_a_call_over_a_bad_network_has_no_gap_beyond_the_plc_limit(
    bad_call: tuple[CallRecord, np.ndarray],
) -> None:
    record, samples = bad_call
    assert record.answered is not None
    assert len(samples) / 8000 == pytest.approx(record.ended - record.answered, abs=0.5)
    for side in (0, 1):
        assert _longest_silence_ms(samples[:, side]) <= JitterConfig().plc_limit_ms


def test_the_call_record_shows_the_loss_and_a_lower_mos_than_a_clean_call(
    bad_call: tuple[CallRecord, np.ndarray], clean_call: tuple[CallRecord, np.ndarray]
) -> None:
    bad, clean = bad_call[0], clean_call[0]
    for bad_leg, clean_leg in zip(bad.legs, clean.legs, strict=True):
        assert bad_leg.packets_received >= 0.9 * SECONDS * 50 * 0.95, bad_leg
        assert 2.5 <= bad_leg.loss_percent <= 7.5, bad_leg
        assert clean_leg.packets_lost == 0, clean_leg
        # 50 ± 40 ms uniform: RFC 3550 jitter reads about a third of the 80 ms spread.
        assert bad_leg.jitter_ms > 10 > clean_leg.jitter_ms
        assert bad_leg.mos is not None and clean_leg.mos is not None
        # G.107 with G.711 PLC (Bpl 25.1): 5 % loss costs about half a MOS point.
        assert bad_leg.mos < clean_leg.mos - 0.2, (bad_leg, clean_leg)
