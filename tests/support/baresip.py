"""baresip run headless on loopback as a registered phone, its ctrl_tcp control
connection, and calls from baresip to `ipbx phone` and to another baresip through ipbx."""

from __future__ import annotations

import contextlib
import json
import re
import secrets
import socket
import subprocess
import threading
import time
from pathlib import Path

from tests.support.netns import Host
from tests.support.ports import LOOPBACK, bindable, free_port, free_udp_range
from tests.support.processes import stop_process
from tests.support.server import Extension, IpbxServer, extension_range
from tests.support.softphone import Audio, analyse, ipbx_phone, write_tone

BARESIP_MODULES = Path("/usr/lib/baresip/modules")
BARESIP, PHONE = extension_range(2)
TOLERANCE_HZ = 20


def wait_for_log(path: Path, text: str, timeout: float = 10.0) -> None:
    """Wait until `text` shows in the log at `path` (baresip's, say); fail with the log."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and text in path.read_text(errors="replace"):
            return
        time.sleep(0.05)
    log = path.read_text(errors="replace") if path.exists() else "(no log)"
    raise AssertionError(f"no {text!r} in {path}:\n{log}")


def start_baresip(
    workdir: Path,
    *,
    registrar_port: int,
    user: Extension,
    audio_file: Path,
    dial: str | None = None,
    seconds: int = 30,
    codecs: str = "PCMU",
    media_encryption: str | None = None,
    control_port: int | None = None,
    host: str = LOOPBACK,
    registrar_host: str = LOOPBACK,
    namespace: Host | None = None,
    sip_trace: bool = False,
    transport: str = "udp",
    outbound: bool = False,
    watch: tuple[str, ...] = (),
    answermode: str = "auto",
) -> subprocess.Popen[bytes]:
    """Run baresip headless as `user` on `host` (in `namespace`, when given), registered
    at registrar_host:registrar_port.
    `media_encryption` is baresip's `mediaenc` (e.g. "srtp-mand": SDES SRTP or no call).
    `control_port` loads ctrl_tcp on 127.0.0.1:control_port (drive it with BaresipControl).

    It answers automatically (`answermode` "manual": it rings until ctrl_tcp's
    `accept`), sends `audio_file` (the call hangs up when it ends) and, with
    the sndfile module, records sent and received audio as workdir/snd/dump-*-{enc,dec}.wav.
    `dial` is a number or SIP URI to call at start; `seconds` bounds its life (-t);
    `sip_trace` writes every SIP message it sends and receives to its log (-s).
    `transport` is how it reaches the registrar; `outbound` registers with SIP Outbound
    (RFC 5626: baresip's `outbound` proxy and `sipnat=outbound`, a reg-id and instance).
    `watch` lists extensions whose presence it subscribes to (its presence module, the
    contacts marked `;presence=p2p`); ctrl_tcp's `contacts` shows what it makes of them.
    Stop it with stop_process(process).
    """
    config_dir = workdir / f"baresip-{user.number}"
    snd_dir = workdir / "snd"
    config_dir.mkdir(parents=True, exist_ok=True)
    snd_dir.mkdir(exist_ok=True)
    rtp_first, rtp_last = free_udp_range(20)
    modules = ["g711.so", "aufile.so", "alsa.so", "sndfile.so"]
    if media_encryption is not None:
        modules.append("srtp.so")
    if "opus" in codecs.lower():
        modules.append("opus.so")
    if "g722" in codecs.lower():
        modules.append("g722.so")
    config = [
        "poll_method epoll",
        f"sip_listen {host}:{_sip_port()}",
        f"net_interface {host}",
        "audio_player alsa,null",
        "audio_alert alsa,null",
        f"audio_source aufile,{audio_file}",
        f"rtp_ports {rtp_first}-{rtp_last}",
        f"module_path {BARESIP_MODULES}",
        *(f"module {module}" for module in modules),
        f"snd_path {snd_dir}",
        # Outbound names the device by its instance ID: uuid writes one to the config
        # folder, before the accounts are read.
        *(["module_app uuid.so"] if outbound else []),
        "module_app account.so",
        "module_app menu.so",
    ]
    if control_port is not None:
        config += ["module_app ctrl_tcp.so", f"ctrl_tcp_listen {LOOPBACK}:{control_port}"]
    if watch:
        config += ["module_app contact.so", "module_app presence.so"]
        (config_dir / "contacts").write_text(
            "".join(
                f'"{n}" <sip:{n}@{registrar_host}:{registrar_port}>;presence=p2p\n' for n in watch
            )
        )
    (config_dir / "config").write_text("\n".join(config) + "\n")
    registrar = f"{registrar_host}:{registrar_port}" + (
        f";transport={transport}" if transport != "udp" else ""
    )
    account = (
        f"<sip:{user.number}@{registrar}>;auth_pass={user.password};"
        f"regint=60;answermode={answermode};audio_codecs={codecs}"
        + (f";mediaenc={media_encryption}" if media_encryption else "")
        + (f';outbound="sip:{registrar}";sipnat=outbound' if outbound else "")
    )
    (config_dir / "accounts").write_text(account + "\n")
    command = ["baresip", "-f", str(config_dir), "-t", str(seconds)]
    if sip_trace:
        command.append("-s")
    if dial is not None:
        target = (
            dial if dial.startswith("sip:") else f"sip:{dial}@{registrar_host}:{registrar_port}"
        )
        command += ["-e", f"/dial {target}"]
    if namespace is not None:
        command = namespace.command(command)
    with (workdir / f"baresip-{user.number}.log").open("wb") as log:
        return subprocess.Popen(
            command,
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def baresip_presses_keys(
    workdir: Path,
    keys: str,
    *,
    registrar_port: int,
    user: Extension,
    dial: str,
    audio_file: Path,
    codecs: str = "PCMU",
    sip_trace: bool = False,
    settle: float = 0.3,
    linger: float = 0.0,
) -> str:
    """baresip as `user` dials `dial`; `settle` s after the call is up it presses each
    key through ctrl_tcp (RFC 4733 events), 400 ms apart (more than the 150 ms of tone
    and pause ipbx plays for a key where it cannot send events), and `linger` s after
    the last one hangs up. Returns its log, having checked it sent every key."""
    control_port = free_port("tcp")
    process = start_baresip(
        workdir,
        registrar_port=registrar_port,
        user=user,
        audio_file=audio_file,
        dial=dial,
        seconds=20,
        codecs=codecs,
        control_port=control_port,
        sip_trace=sip_trace,
    )
    log = workdir / f"baresip-{user.number}.log"
    try:
        control = BaresipControl(control_port)
        try:
            wait_for_log(log, "Call established")
            time.sleep(settle)
            for key in keys:
                control.command("sndcode", key)
                time.sleep(0.4)
            time.sleep(linger)
            control.command("hangup")
        finally:
            control.close()
        wait_for_log(log, "terminated")
    finally:
        stop_process(process)
    text = log.read_text(errors="replace")
    assert "".join(re.findall(r"send DTMF digit: '(.)'", text)) == keys, text
    return text


def _sip_port() -> int:
    """A port for baresip's SIP over UDP and TCP whose next port is free too: baresip
    listens there for SIP over TLS, and fails to start when it is taken."""
    for _ in range(200):
        port = free_port("both")
        if bindable(port + 1, "tcp"):
            return port
    raise OSError(f"no free pair of ports for baresip on {LOOPBACK}")


class BaresipControl:
    """A connection to baresip's ctrl_tcp: each command is a netstring-framed JSON object
    {"command", "params", "token"} taking the long commands of its menu ("sndcode 5"
    presses and releases key 5 in the current call, "hangup" ends it). Replies and
    events ({"event": true, "type": "CALL_DTMF_START", ...}) share the connection; a
    thread reads them, so one thread may wait for an event while another sends commands."""

    def __init__(self, port: int, timeout: float = 5.0) -> None:
        self.events: list[dict[str, object]] = []
        self._replies: dict[str, dict[str, object]] = {}
        self._arrived = threading.Condition()
        self._timeout = timeout
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._sock = socket.create_connection((LOOPBACK, port), timeout=timeout)
                break
            except ConnectionRefusedError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        self._sock.settimeout(None)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def send(self, command: str, params: str = "") -> str:
        """Send one command without waiting for its reply; its token."""
        token = secrets.token_hex(4)
        body = json.dumps({"command": command, "params": params, "token": token}).encode()
        self._sock.sendall(b"%d:%s," % (len(body), body))
        return token

    def command(self, command: str, params: str = "") -> str:
        """Send one command, wait for its reply; its `data`, or RuntimeError if not ok."""
        token = self.send(command, params)
        with self._arrived:
            if not self._arrived.wait_for(lambda: token in self._replies, self._timeout):
                raise TimeoutError(f"no reply from baresip's ctrl_tcp to {command} {params!r}")
            reply = self._replies.pop(token)
        if not reply.get("ok"):
            raise RuntimeError(f"baresip refused {command} {params!r}: {reply}")
        return str(reply.get("data", ""))

    def wait_event(self, kind: str, timeout: float) -> dict[str, object] | None:
        """The first event of type `kind` (e.g. "CALL_ESTABLISHED") in `events`, waiting
        up to `timeout` s for one to arrive; None if none did."""

        def first() -> dict[str, object] | None:
            return next((event for event in self.events if event.get("type") == kind), None)

        with self._arrived:
            self._arrived.wait_for(lambda: first() is not None, timeout)
            return first()

    def _read(self) -> None:
        # A netstring is "<length>:<bytes>," (the framing ctrl_tcp speaks).
        buffer = b""
        while True:
            try:
                chunk = self._sock.recv(65536)
            except OSError:
                return
            if not chunk:
                return
            buffer += chunk
            while True:
                length, colon, rest = buffer.partition(b":")
                if not (colon and len(rest) > int(length)):
                    break
                message: dict[str, object] = json.loads(rest[: int(length)])
                buffer = rest[int(length) + 1 :]
                with self._arrived:
                    if message.get("event"):
                        self.events.append(message)
                    else:
                        self._replies[str(message.get("token"))] = message
                    self._arrived.notify_all()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        self._reader.join(5)


def wait_registered(server: IpbxServer, number: str, timeout: float = 10.0) -> None:
    """The registrar logs each successful REGISTER; wait for `number`'s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if f"{number} registered" in server.log_tail(200):
            return
        time.sleep(0.1)
    raise AssertionError(f"{number} did not register:\n{server.log_tail()}")


def baresip_tone(path: Path, frequency: float, seconds: float, codecs: str) -> Path:
    """A tone for baresip's file source, which must match the codec: 48 kHz stereo for
    Opus, 8 kHz mono for G.711."""
    if "opus" in codecs.lower():
        return write_tone(path, frequency, seconds, rate=48000, channels=2)
    return write_tone(path, frequency, seconds)


def baresip_calls_baresip(
    server: IpbxServer, tmp_path: Path, caller_codecs: str, callee_codecs: str
) -> tuple[Audio, Audio, str]:
    """baresip 1000 (`caller_codecs`, 1 kHz for 4 s) dials baresip 1001 (`callee_codecs`,
    700 Hz for 4 s), which answers automatically; each hangs up when its tone ends.
    Returns what the caller heard and what the callee heard (their decoded dumps), and
    the callee's log with its SIP trace."""
    caller_dir, callee_dir = tmp_path / "caller", tmp_path / "callee"
    callee = start_baresip(
        callee_dir,
        registrar_port=server.port,
        user=PHONE,
        audio_file=baresip_tone(tmp_path / "700hz.wav", 700, 4, callee_codecs),
        codecs=callee_codecs,
        seconds=25,
        sip_trace=True,
    )
    try:
        wait_registered(server, PHONE.number)
        caller = start_baresip(
            caller_dir,
            registrar_port=server.port,
            user=BARESIP,
            audio_file=baresip_tone(tmp_path / "1000hz.wav", 1000, 4, caller_codecs),
            dial=PHONE.number,
            codecs=caller_codecs,
            seconds=12,
        )
        try:
            caller.wait(timeout=20)
        finally:
            stop_process(caller)
    finally:
        stop_process(callee)
    logs = [
        (directory / f"baresip-{user.number}.log").read_text(errors="replace")
        for directory, user in ((caller_dir, BARESIP), (callee_dir, PHONE))
    ]
    heard = []
    for directory in (caller_dir, callee_dir):
        dumps = sorted((directory / "snd").glob("dump-*-dec.wav"))
        assert dumps, "".join(logs)
        heard.append(analyse(dumps[-1]))
    return heard[0], heard[1], logs[1]


def baresip_calls_phone(
    server: IpbxServer,
    tmp_path: Path,
    baresip_tone: Path,
    phone_args: tuple[str, ...] = (),
    phone_seconds: float = 3,
    **baresip: str,
) -> tuple[Audio, Audio, str]:
    """baresip (1000) dials `ipbx phone` (1001), which answers playing 700 Hz for
    `phone_seconds` (then hangs up) and records; returns what the phone heard, what
    baresip heard, and baresip's log."""
    our_tone = write_tone(tmp_path / "700hz.wav", 700, phone_seconds)
    recording = tmp_path / "heard-by-ipbx-phone.wav"
    with ipbx_phone(
        tmp_path, server.port, PHONE,
        "--register", "--answer", *phone_args, "--play", str(our_tone),
        "--record", str(recording), "--timeout", "20",
    ) as phone:  # fmt: skip
        phone.wait_for("registered as")
        process = start_baresip(
            tmp_path,
            registrar_port=server.port,
            user=BARESIP,
            audio_file=baresip_tone,
            dial=PHONE.number,
            seconds=15,
            **baresip,
        )
        try:
            status, out = phone.finish()
        finally:
            stop_process(process)
    baresip_log = (tmp_path / f"baresip-{BARESIP.number}.log").read_text(errors="replace")
    assert (status, out.splitlines()[-1]) == (0, "result: answered"), phone.log + baresip_log
    assert "RTP/SAVP" not in phone.log  # the phone speaks plain RTP only
    dumps = sorted((tmp_path / "snd").glob("dump-*-dec.wav"))
    assert dumps, baresip_log
    return analyse(recording), analyse(dumps[-1]), baresip_log
