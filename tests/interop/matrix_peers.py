"""The peers of the interop matrix, each behind one interface: started and registered
once per matrix run, then told for each call what to do (a `Plan`) and asked what it
heard (an `Outcome`).

Every call of the matrix follows one timetable, counted by each side from its own
answer: both sides send their tone throughout; DTMF is sent at once; the holding side
holds at HOLD_AT and resumes at RESUME_AT; the hanging-up side hangs up at HANG_UP_AT.
Interactive peers (baresip over ctrl_tcp, linphonec over stdin, pyVoIP in-process)
follow it from a thread of ours; `ipbx phone` and SIPp get it as arguments or scenario.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from tests.support.baresip import BaresipControl, start_baresip
from tests.support.linphone import Linphonec, linphonec
from tests.support.ports import LOOPBACK, free_port
from tests.support.processes import stop_process
from tests.support.pyvoip import PyVoipCall, PyVoipPhone
from tests.support.server import Extension, IpbxServer
from tests.support.softphone import PhoneRun, ipbx_phone, write_tone

DIGITS = "15#"
HOLD_AT = 1.5
RESUME_AT = 3.0
HANG_UP_AT = 5.0
# A hold that took long to set up still lasts this long before the resume.
HELD_AT_LEAST = 0.5
# A side that waits for the other's BYE gives up this long after the call should end.
GRACE = 6.0
# Each peer's tone file outlasts any call (baresip hangs up when its file ends).
TONE_SECONDS = 60


@dataclass(frozen=True)
class Plan:
    """What one side does in one call of the matrix."""

    call: str | None  # the number to dial; None: answer the next call
    send_dtmf: bool
    hold: bool
    hang_up: bool


@dataclass
class Outcome:
    """What one side saw of the call: None where the peer cannot tell."""

    answered: bool
    recording: Path | None
    digits: str | None
    ended_by_peer: bool
    log: str = ""


class MatrixPeer:
    """One peer of the matrix, registered as `user`, sending a `tone_hz` sine."""

    def __init__(self, key: str, label: str, user: Extension, tone_hz: int) -> None:
        self.key, self.label, self.user, self.tone_hz = key, label, user, tone_hz
        self.workdir = Path()
        self.server_port = 0
        self._calls = 0

    def start(self, server: IpbxServer, workdir: Path) -> None:
        self.workdir = workdir / self.key
        self.workdir.mkdir(parents=True)
        self.server_port = server.port
        self.register()

    def register(self) -> None:
        """Start the peer and register it (once per matrix run)."""

    def stop(self) -> None:
        """Stop what `register` started."""

    def reset(self) -> None:
        """End whatever call a failed cell left behind."""

    def begin(self, plan: Plan) -> None:
        """Dial (plan.call) or get ready to answer the next call, and follow the plan."""
        raise NotImplementedError

    def finish(self) -> Outcome:
        """Wait for the call to end; what this side saw."""
        raise NotImplementedError

    def uri(self, number: str) -> str:
        return f"sip:{number}@{LOOPBACK}:{self.server_port}"

    def next_path(self, name: str) -> Path:
        self._calls += 1
        return self.workdir / f"{self._calls:02d}-{name}"


class Timetable:
    """Runs a plan's hold, resume and hang-up at their times from an answer, in a thread."""

    def __init__(
        self, plan: Plan, hold: Callable[[], object], resume: Callable[[], object],
        hang_up: Callable[[], object],
    ) -> None:  # fmt: skip
        self.steps: list[tuple[float, Callable[[], object]]] = []
        if plan.hold:
            self.steps += [(HOLD_AT, hold), (RESUME_AT, resume)]
        if plan.hang_up:
            self.steps.append((HANG_UP_AT, hang_up))
        self.errors: list[BaseException] = []
        self.hung_up = False
        self._cancel = threading.Event()
        self._thread: threading.Thread | None = None

    def run_from_now(self) -> None:
        started = time.monotonic()

        def run() -> None:
            done = started
            for at, step in self.steps:
                due = max(started + at, done + HELD_AT_LEAST if at == RESUME_AT else 0.0)
                if self._cancel.wait(max(0.0, due - time.monotonic())):
                    return
                try:
                    step()
                except Exception as exc:  # reported by finish()
                    self.errors.append(exc)
                    return
                done = time.monotonic()
                self.hung_up = self.hung_up or at == HANG_UP_AT

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._cancel.set()
        if self._thread is not None:
            self._thread.join(5)
        if self.errors:
            raise self.errors[0]


class BaresipPeer(MatrixPeer):
    """baresip with one codec list (or mandatory SDES-SRTP), driven over ctrl_tcp."""

    def __init__(
        self, key: str, label: str, user: Extension, tone_hz: int, codecs: str,
        rate: int = 8000, channels: int = 1, media_encryption: str | None = None,
    ) -> None:  # fmt: skip
        super().__init__(key, label, user, tone_hz)
        self.codecs, self.rate, self.channels = codecs, rate, channels
        self.media_encryption = media_encryption

    def register(self) -> None:
        tone = write_tone(
            self.workdir / "tone.wav", self.tone_hz, TONE_SECONDS, self.rate, self.channels
        )
        control_port = free_port("tcp")
        self.process = start_baresip(
            self.workdir, registrar_port=self.server_port, user=self.user, audio_file=tone,
            seconds=3600, codecs=self.codecs, media_encryption=self.media_encryption,
            control_port=control_port,
        )  # fmt: skip
        self.control = BaresipControl(control_port)
        self.in_call = False
        self.log_path = self.workdir / f"baresip-{self.user.number}.log"
        deadline = time.monotonic() + 10
        while "200 OK" not in self.log_path.read_text(errors="replace"):
            assert time.monotonic() < deadline, self.log_path.read_text(errors="replace")
            time.sleep(0.05)

    def stop(self) -> None:
        self.control.close()
        stop_process(self.process)

    def reset(self) -> None:
        if self.in_call:
            with contextlib.suppress(RuntimeError, TimeoutError):
                self.control.command("hangup")
            self.in_call = False

    def begin(self, plan: Plan) -> None:
        self.plan = plan
        self.dumps_before = set(self.workdir.glob("snd/dump-*-dec.wav"))
        self.control.events.clear()
        self.log_offset = len(self.log_path.read_text(errors="replace"))
        self.in_call = True
        if plan.call is not None:
            self.control.command("dial", self.uri(plan.call))

    def finish(self) -> Outcome:
        plan = self.plan
        answered = self.control.wait_event("CALL_ESTABLISHED", HANG_UP_AT + GRACE) is not None
        table = Timetable(
            plan,
            # Not waiting for baresip's replies keeps the timetable on time.
            lambda: self.control.send("hold"),
            lambda: self.control.send("resume"),
            lambda: self.control.send("hangup"),
        )
        if answered:
            table.run_from_now()
            if plan.send_dtmf:
                time.sleep(0.3)
                for digit in DIGITS:
                    self.control.command("sndcode", digit)
                    time.sleep(0.2)
        closed = self.control.wait_event("CALL_CLOSED", HANG_UP_AT + GRACE)
        self.in_call = closed is None
        table.stop()
        digits = "".join(
            str(event.get("param", ""))
            for event in self.control.events
            if event.get("type") == "CALL_DTMF_START"
        )
        dumps = sorted(set(self.workdir.glob("snd/dump-*-dec.wav")) - self.dumps_before)
        log = self.log_path.read_text(errors="replace")[self.log_offset :]
        return Outcome(
            answered=answered,
            recording=dumps[-1] if dumps else None,
            digits=digits,
            ended_by_peer=closed is not None and not table.hung_up,
            log=log,
        )


class LinphonePeer(MatrixPeer):
    """linphonec over its stdin, audio from and to WAV files."""

    def register(self) -> None:
        self.tone = write_tone(self.workdir / "tone.wav", self.tone_hz, TONE_SECONDS)
        self.stack = ExitStack()
        self.phone: Linphonec = self.stack.enter_context(
            linphonec(self.workdir, self.server_port, self.user)
        )
        self.phone.wait_registered()
        self.phone.send(f"play {self.tone}")

    def stop(self) -> None:
        self.stack.close()

    def reset(self) -> None:
        self.phone.send("terminate all")

    def begin(self, plan: Plan) -> None:
        self.plan = plan
        self.recording = self.next_path("heard.wav")
        self.offset = len(self.phone.console)
        self.phone.send(f"record {self.recording}")
        if plan.call is not None:
            self.phone.send(f"call {self.uri(plan.call)}")

    def _pause(self) -> None:
        self.phone.send("pause")
        self.phone.wait_console(r"is now paused", self.offset, timeout=3)

    def finish(self) -> Outcome:
        plan = self.plan
        connected = r"Call \d+ with .* connected"
        try:
            self.phone.wait_console(connected, self.offset, timeout=HANG_UP_AT + GRACE)
            answered = True
        except AssertionError:
            answered = False
        table = Timetable(
            plan, self._pause, lambda: self.phone.send("resume"),
            lambda: self.phone.send("terminate"),
        )  # fmt: skip
        if answered:
            table.run_from_now()
            if plan.send_dtmf:
                time.sleep(0.3)
                for digit in DIGITS:
                    self.phone.send(digit)
                    time.sleep(0.2)
        try:
            self.phone.wait_console(r"Call \d+ with .* ended", self.offset, HANG_UP_AT + GRACE)
            ended = True
        except AssertionError:
            ended = False
        table.stop()
        return Outcome(
            answered=answered,
            recording=self.recording if self.recording.exists() else None,
            digits=self.phone.tones_received(self.offset),
            ended_by_peer=ended and not table.hung_up,
            log=self.phone.console[self.offset :],
        )


class IpbxPhonePeer(MatrixPeer):
    """`ipbx phone`, one process per call (it registers for the call's session)."""

    def register(self) -> None:
        self.tone = write_tone(self.workdir / "tone.wav", self.tone_hz, HANG_UP_AT + GRACE)

    def begin(self, plan: Plan) -> None:
        self.plan = plan
        self.recording = self.next_path("heard.wav")
        args = ["--play", str(self.tone), "--record", str(self.recording)]
        args += ["--timeout", str(HANG_UP_AT + GRACE)]
        if plan.send_dtmf:
            args += ["--dtmf", DIGITS]
        if plan.hold:
            args += ["--hold", str(HOLD_AT)]
        if plan.hang_up:
            args += ["--duration", str(HANG_UP_AT)]
        args = ["--call", plan.call, *args] if plan.call else ["--register", "--answer", *args]
        self.stack = ExitStack()
        self.run: PhoneRun = self.stack.enter_context(
            ipbx_phone(self.workdir, self.server_port, self.user, *args)
        )
        if plan.call is None:
            self.run.wait_for("registered as")

    def finish(self) -> Outcome:
        with self.stack:
            _, out = self.run.finish(HANG_UP_AT + GRACE + 5)
        lines = out.splitlines()
        return Outcome(
            answered="result: answered" in lines,
            recording=self.recording if self.recording.exists() else None,
            digits="".join(line[len("dtmf: ") :] for line in lines if line.startswith("dtmf: ")),
            ended_by_peer="the far end hung up" in self.run.log,
            log=self.run.log,
        )


class PyVoipPeer(MatrixPeer):
    """pyVoIP in this process: it answers calls (it cannot place one through ipbx)."""

    def register(self) -> None:
        self.phone = PyVoipPhone(self.server_port, self.user)
        self.phone.start()

    def stop(self) -> None:
        self.phone.stop()

    def begin(self, plan: Plan) -> None:
        assert plan == Plan(call=None, send_dtmf=False, hold=False, hang_up=False), plan
        self.call: PyVoipCall = self.phone.expect_call(self.tone_hz, TONE_SECONDS)

    def finish(self) -> Outcome:
        answered = self.call.answered.wait(HANG_UP_AT + GRACE)
        ended = self.call.ended.wait(HANG_UP_AT + GRACE)
        recording = self.call.write_recording(self.next_path("heard.wav"))
        return Outcome(answered, recording, self.call.digits, ended, log=self.call.error)
