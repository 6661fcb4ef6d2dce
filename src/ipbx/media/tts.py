"""Text-to-speech prompts through espeak-ng, cached as 8 kHz mono WAV files.

A prompt is synthesised once: the file name is a hash of everything that shapes
the audio (text, voice, speed, rate), so saying the same text again is a file
lookup, and the cached WAV plays through MediaEndpoint.play like any prompt.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from ipbx.media.audiofile import AudioFileError, read_audio
from ipbx.media.wav import WavWriter

ESPEAK = "espeak-ng"
# The Debian package that provides it (`make serve` installs it).
ESPEAK_PACKAGE = "espeak-ng"


class TtsError(RuntimeError):
    """espeak-ng is missing, failed or took too long."""


def available() -> bool:
    """Whether espeak-ng can be run here (it is looked up on PATH, as each prompt runs it)."""
    return shutil.which(ESPEAK) is not None


def prompt_path(text: str, cache_dir: str | Path, voice: str, speed: int, rate: int) -> Path:
    """Where the prompt for these settings is (or will be) cached."""
    key = json.dumps([text, voice, speed, rate], ensure_ascii=False).encode()
    return Path(cache_dir) / f"{hashlib.sha256(key).hexdigest()}.wav"


def synthesize(
    text: str,
    cache_dir: str | Path,
    voice: str = "en",
    speed: int = 160,
    rate: int = 8000,
    timeout: float = 30.0,
) -> Path:
    """The cached WAV of `text` spoken by espeak-ng `voice` at `speed` words/minute."""
    path = prompt_path(text, cache_dir, voice, speed, rate)
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    # Temporary names in the cache directory, renamed into place: concurrent callers
    # never see a half-written prompt.
    raw, out = (_temp_file(path.parent, suffix) for suffix in (".espeak.wav", ".wav"))
    try:
        _espeak(text, voice, speed, raw, timeout)
        try:
            pcm = read_audio(raw, rate)
        except AudioFileError as exc:
            raise TtsError(f"espeak-ng wrote unreadable audio: {exc}") from exc
        with WavWriter(out, rate) as writer:
            writer.write(pcm)
        os.replace(out, path)
    finally:
        raw.unlink(missing_ok=True)
        out.unlink(missing_ok=True)
    return path


def _temp_file(directory: Path, suffix: str) -> Path:
    fd, name = tempfile.mkstemp(suffix=suffix, dir=directory)
    os.close(fd)
    return Path(name)


def _espeak(text: str, voice: str, speed: int, out: Path, timeout: float) -> None:
    # Text goes on stdin, so text starting with "-" is never taken for an option.
    command = [ESPEAK, "-v", voice, "-s", str(speed), "-w", str(out), "--stdin"]
    try:
        result = subprocess.run(
            command, input=text.encode(), capture_output=True, timeout=timeout, check=False
        )
    except FileNotFoundError as exc:
        raise TtsError(f"{ESPEAK} not found: install the {ESPEAK_PACKAGE} package") from exc
    except subprocess.TimeoutExpired as exc:
        raise TtsError(f"{ESPEAK} took longer than {timeout:g} s") from exc
    if result.returncode != 0:
        stderr = result.stderr.decode(errors="replace").strip()
        raise TtsError(f"{ESPEAK} failed (exit {result.returncode}): {stderr}")
