"""Prompts in any format to any codec, and music on hold from a folder."""

import asyncio
from pathlib import Path

import numpy as np
import pytest

from ipbx.media.codecs import G722, OPUS, PCMU, Codec
from ipbx.media.endpoint import MediaEndpoint, MediaError
from ipbx.media.moh import MusicOnHold
from ipbx.media.ports import PortPool
from ipbx.media.wav import read_wav
from tests.support.media import run
from tests.support.tones import encode_tone, peak_hz


@pytest.mark.parametrize("codec", [PCMU, G722, OPUS], ids=lambda c: c.name)
def test_an_mp3_prompt_is_played_at_the_codecs_own_rate(
    pool: PortPool, tmp_path: Path, codec: Codec
) -> None:
    """A 44.1 kHz MP3 comes out of a G.711, a G.722 (16 kHz on an 8 kHz RTP clock) and an
    Opus (48 kHz) leg as the same 1 second, 1 kHz tone."""
    prompt = tmp_path / "prompt.mp3"
    encode_tone(prompt, "mp3", "fltp", 44100, 1000.0)

    async def scenario() -> None:
        a, b = await MediaEndpoint.open(pool), await MediaEndpoint.open(pool)
        a.set_remote(*b.local_address, codec)
        b.set_remote(*a.local_address, codec)
        b.record(tmp_path / "heard.wav")
        await a.play(prompt)
        await asyncio.sleep(0.1)
        b.stop_recording()
        assert b.pcm_rate == {"PCMU": 8000, "G722": 16000, "opus": 48000}[codec.name]
        a.close()
        b.close()

    run(scenario)
    heard = read_wav(tmp_path / "heard.wav", 8000)
    assert len(heard) / 8000 == pytest.approx(1.0, abs=0.1)
    assert peak_hz(heard[800:-800], 8000) == pytest.approx(1000, abs=15)


def test_a_file_that_is_not_audio_is_a_media_error(pool: PortPool, tmp_path: Path) -> None:
    (tmp_path / "notes.mp3").write_text("not audio")

    async def scenario() -> None:
        a = await MediaEndpoint.open(pool)
        a.set_remote("127.0.0.1", 9, PCMU)
        with pytest.raises(MediaError, match=r"notes\.mp3"):
            await a.play(tmp_path / "notes.mp3")
        a.close()

    run(scenario)


def test_music_on_hold_loops_the_folder_in_name_order_and_skips_bad_files(
    pool: PortPool, tmp_path: Path
) -> None:
    folder = tmp_path / "moh"
    folder.mkdir()
    encode_tone(folder / "1-low.mp3", "mp3", "fltp", 44100, 500.0)
    (folder / "2-broken.wav").write_bytes(b"RIFF nonsense")
    encode_tone(folder / "3-high.wav", "pcm_s16le", "s16", 16000, 1500.0)
    (folder / "readme.txt").write_text("not music")
    assert [p.name for p in MusicOnHold(folder).files()] == [
        "1-low.mp3",
        "2-broken.wav",
        "3-high.wav",
    ]

    async def scenario() -> None:
        a, b = await MediaEndpoint.open(pool), await MediaEndpoint.open(pool)
        a.set_remote(*b.local_address, PCMU)
        b.set_remote(*a.local_address, PCMU)
        b.record(tmp_path / "held.wav")
        music = asyncio.ensure_future(MusicOnHold(folder).play(a))
        # The two good files, then the first again: 2.6 s of 20 ms packets, however
        # late a busy machine starts the music.
        async with asyncio.timeout(15):
            while b.stats.packets_received < 130:
                await asyncio.sleep(0.05)
        music.cancel()
        b.stop_recording()
        a.close()
        b.close()

    run(scenario)
    held = read_wav(tmp_path / "held.wav", 8000)
    seconds = [held[i * 8000 + 1000 : (i + 1) * 8000 - 1000] for i in range(3)]
    assert [round(peak_hz(part, 8000), -1) for part in seconds] == [500, 1500, 500]
    assert np.abs(held[: 2 * 8000]).max() > 10000
