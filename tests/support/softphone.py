"""Run `ipbx phone` as a process and judge the audio it records: shared by the phone
tests and the interop tests that pit it against other SIP phones; `talk` is a call
between two of them through ipbx, a tone each way."""

from __future__ import annotations

import subprocess
import sys
import time
import wave
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tests.support.netns import Host
from tests.support.ports import LOOPBACK
from tests.support.processes import stop_process
from tests.support.server import CALLEE, CALLER, Extension, IpbxServer

RATE = 8000


def write_tone(
    path: Path, frequency: float, seconds: float, rate: int = RATE, channels: int = 1
) -> Path:
    """A 16-bit sine at half scale (8 kHz mono unless told otherwise)."""
    t = np.arange(int(rate * seconds)) / rate
    mono = (16000 * np.sin(2 * np.pi * frequency * t)).astype("<i2")
    samples = np.repeat(mono, channels)
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(channels)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(samples.tobytes())
    return path


@dataclass(frozen=True)
class Audio:
    seconds: float
    dominant_hz: float


def analyse(path: Path, channel: int = 0) -> Audio:
    """Length and the strongest frequency (numpy FFT) of one channel of a 16-bit WAV."""
    with wave.open(str(path), "rb") as wav:
        rate = wav.getframerate()
        frames = wav.readframes(wav.getnframes())
        channels = wav.getnchannels()
    samples = (
        np.frombuffer(frames, dtype="<i2").reshape(-1, channels)[:, channel].astype(np.float64)
    )
    if samples.size == 0:
        return Audio(0.0, 0.0)
    spectrum = np.abs(np.fft.rfft(samples - samples.mean()))
    frequencies = np.fft.rfftfreq(samples.size, 1 / rate)
    return Audio(samples.size / rate, float(frequencies[int(np.argmax(spectrum))]))


def timeline(path: Path, frame_ms: int = 100, quiet_rms: float = 300.0) -> list[float | None]:
    """The strongest frequency of each `frame_ms` slice of channel 0 of a 16-bit WAV, in
    order; None for a slice quieter than `quiet_rms` (silence, a hold without music)."""
    with wave.open(str(path), "rb") as wav:
        rate = wav.getframerate()
        channels = wav.getnchannels()
        frames = wav.readframes(wav.getnframes())
    samples = np.frombuffer(frames, dtype="<i2").reshape(-1, channels)[:, 0].astype(np.float64)
    size = rate * frame_ms // 1000
    slices = [samples[start : start + size] for start in range(0, samples.size - size + 1, size)]
    frequencies = np.fft.rfftfreq(size, 1 / rate)
    return [
        float(frequencies[int(np.argmax(np.abs(np.fft.rfft(s * np.hanning(size)))))])
        if np.sqrt(np.mean(s**2)) >= quiet_rms
        else None
        for s in slices
    ]


def near(hz: float | None, target: float, tolerance: float = 25.0) -> bool:
    """Whether a slice of a `timeline` is the tone of `target` Hz."""
    return hz is not None and abs(hz - target) <= tolerance


@dataclass
class PhoneRun:
    """One `ipbx phone` process; its log (stderr) goes to a file, stdout to a pipe."""

    process: subprocess.Popen[str]
    log_path: Path

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for(self, text: str, timeout: float = 10.0) -> None:
        """Wait until the log shows `text` (e.g. that the phone has registered)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.log:
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"ipbx phone never logged {text!r}:\n{self.log}")

    def finish(self, timeout: float = 30.0) -> tuple[int, str]:
        """Exit status and stdout; a phone still running after `timeout` is stopped."""
        try:
            stdout, _ = self.process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            stop_process(self.process)
            message = f"ipbx phone still running after {timeout} s:\n{self.log}"
            raise AssertionError(message) from None
        return self.process.returncode, stdout


@contextmanager
def ipbx_phone(
    workdir: Path,
    server_port: int,
    user: Extension,
    *args: str,
    server_host: str = LOOPBACK,
    namespace: Host | None = None,
) -> Iterator[PhoneRun]:
    """Start `ipbx phone --server HOST:PORT --user U --password P ARGS` (in `namespace`,
    when given); it is stopped by PID when the block ends, if still running."""
    log_path = workdir / f"phone-{user.number}-{time.monotonic_ns()}.log"
    command = [
        sys.executable, "-m", "ipbx.cli", "phone",
        "--server", f"{server_host}:{server_port}",
        "--user", user.number, "--password", user.password,
        *args,
    ]  # fmt: skip
    if namespace is not None:
        command = namespace.command(command)
    with log_path.open("w") as log:
        process = subprocess.Popen(
            command, cwd=workdir, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=log, text=True,
        )  # fmt: skip
    run = PhoneRun(process, log_path)
    try:
        yield run
    finally:
        if process.poll() is None:
            stop_process(process)


def echo_of(server: IpbxServer, workdir: Path, played: Path) -> Audio:
    """1000 calls the echo test playing `played`, answered; what it heard back."""
    recording = workdir / "echo.wav"
    with ipbx_phone(
        workdir, server.port, CALLER,
        "--call", "9196", "--play", str(played), "--record", str(recording), "--timeout", "15",
    ) as p:  # fmt: skip
        status, out = p.finish()
    assert (status, out.splitlines()[-1]) == (0, "result: answered"), p.log
    return analyse(recording)


def talk(server: IpbxServer, workdir: Path, seconds: float) -> None:
    """1000 calls 1001; 1000 plays 1 kHz, 1001 plays 700 Hz, for `seconds`."""
    high = write_tone(workdir / "1000hz.wav", 1000, seconds)
    low = write_tone(workdir / "700hz.wav", 700, seconds)
    with ipbx_phone(
        workdir, server.port, CALLEE,
        "--register", "--answer", "--play", str(low), "--timeout", str(seconds + 10),
    ) as callee:  # fmt: skip
        callee.wait_for("registered as")
        with ipbx_phone(
            workdir, server.port, CALLER,
            "--call", CALLEE.number, "--play", str(high), "--duration", str(seconds),
            "--timeout", str(seconds + 10),
        ) as caller:  # fmt: skip
            status, out = caller.finish()
        callee.finish()
    assert (status, out.splitlines()[-1]) == (0, "result: answered"), caller.log
