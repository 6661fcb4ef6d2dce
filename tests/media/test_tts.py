"""espeak-ng prompts: 8 kHz, non-silent, synthesised once and then served from cache."""

import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ipbx.media import tts
from ipbx.media.wav import read_wav


def test_prompt_is_8k_speech_and_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tts.synthesize("Please leave a message after the tone.", tmp_path)
    assert path.parent == tmp_path
    with open(path, "rb") as f:
        header = f.read(28)
    assert int.from_bytes(header[24:28], "little") == 8000
    pcm = read_wav(path)
    assert pcm.size > 8000
    assert np.sqrt(np.mean(pcm.astype(np.float64) ** 2)) > 500
    mtime = path.stat().st_mtime_ns

    def no_subprocess(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("espeak-ng ran again for a cached prompt")

    monkeypatch.setattr(subprocess, "run", no_subprocess)
    assert tts.synthesize("Please leave a message after the tone.", tmp_path) == path
    assert path.stat().st_mtime_ns == mtime
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_settings_make_distinct_prompts(tmp_path: Path) -> None:
    a = tts.synthesize("Hello", tmp_path)
    b = tts.synthesize("Hello", tmp_path, speed=120)
    c = tts.synthesize("Hello", tmp_path, voice="de")
    assert len({a, b, c}) == 3
    assert read_wav(b).size > read_wav(a).size  # slower speech is longer


def test_text_that_looks_like_an_option(tmp_path: Path) -> None:
    assert read_wav(tts.synthesize("-h --version", tmp_path)).size > 800


def test_missing_espeak(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tts, "ESPEAK", "espeak-ng-not-installed")
    with pytest.raises(tts.TtsError, match="install the espeak-ng package"):
        tts.synthesize("Hello", tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_timeout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def slow(*args: Any, **kwargs: Any) -> None:
        raise subprocess.TimeoutExpired(args[0], kwargs["timeout"])

    monkeypatch.setattr(subprocess, "run", slow)
    with pytest.raises(tts.TtsError, match=r"longer than 0\.5 s"):
        tts.synthesize("Hello", tmp_path, timeout=0.5)


def test_failing_espeak_leaves_no_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tts, "ESPEAK", shutil.which("false") or "/bin/false")
    with pytest.raises(tts.TtsError, match=r"failed \(exit 1\)"):
        tts.synthesize("Hello", tmp_path)
    assert list(tmp_path.iterdir()) == []
