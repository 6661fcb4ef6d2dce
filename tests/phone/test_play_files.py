"""`ipbx phone --play` takes the audio files people have, read through FFmpeg as the
server's prompts are: WAVs as sox writes them (WAVE_FORMAT_EXTENSIBLE, 24-bit or float,
stereo, 44.1 kHz) and MP3. The echo test sends each back as the tone it holds. A file
that cannot be decoded is a one-line error before any call is placed, exit status 2."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest

from ipbx.cli import main
from tests.support.server import IpbxServer, extension_range
from tests.support.softphone import echo_of
from tests.support.tones import encode_tone

CALLER = extension_range(1)[0]
TONE_HZ = 1000
WAVE_FORMAT_EXTENSIBLE = 0xFFFE
WAVE_FORMAT_IEEE_FLOAT = 3


def sox_tone(path: Path, *encoding: str) -> Path:
    """Two seconds of a 1 kHz sine, stereo at 44.1 kHz, written by sox as `encoding` asks."""
    subprocess.run(
        ["sox", "-n", "-r", "44100", "-c", "2", *encoding, str(path),
         "synth", "2", "sine", str(TONE_HZ), "vol", "0.5"],
        check=True, timeout=30,
    )  # fmt: skip
    return path


def wav_format_tag(path: Path) -> int:
    return int.from_bytes(path.read_bytes()[20:22], "little")


def test_sox_writes_the_wavs_users_have(tmp_path: Path) -> None:
    """What the echo tests below play is what the issue names."""
    assert wav_format_tag(sox_tone(tmp_path / "s24.wav", "-b", "24")) == WAVE_FORMAT_EXTENSIBLE
    assert wav_format_tag(sox_tone(tmp_path / "f32.wav", "-e", "floating-point", "-b", "32")) == (
        WAVE_FORMAT_IEEE_FLOAT
    )


@pytest.mark.parametrize(
    "kind", ["wav-extensible-24bit", "wav-float", "mp3"], ids=lambda kind: kind
)
def test_the_echo_test_returns_the_files_tone(ipbx: IpbxServer, tmp_path: Path, kind: str) -> None:
    if kind == "wav-extensible-24bit":
        played = sox_tone(tmp_path / "tone.wav", "-b", "24")
    elif kind == "wav-float":
        played = sox_tone(tmp_path / "tone.wav", "-e", "floating-point", "-b", "32")
    else:
        played = tmp_path / "tone.mp3"
        encode_tone(played, "mp3", "fltp", 44100, TONE_HZ, "stereo")
    echoed = echo_of(ipbx, tmp_path, played)
    assert echoed.dominant_hz == pytest.approx(TONE_HZ, abs=20)
    assert echoed.seconds >= 0.7


def test_a_file_that_is_not_audio_is_one_line_and_no_call(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The "server" is a socket of ours: nothing reaches it, the phone never starts."""
    notes = tmp_path / "notes.wav"
    notes.write_text("not audio at all\n")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as server:
        server.bind(("127.0.0.1", 0))
        server.settimeout(0.5)
        port = server.getsockname()[1]
        status = main(
            ["phone", "--server", f"127.0.0.1:{port}", "--user", CALLER.number,
             "--password", CALLER.password, "--call", "9196", "--play", str(notes)]
        )  # fmt: skip
        with pytest.raises(TimeoutError):
            server.recv(65535)
    assert status == 2
    out, err = capsys.readouterr()
    assert out == ""
    [line] = err.splitlines()
    assert line.startswith(f"ipbx phone: --play: {notes}: cannot decode audio")
