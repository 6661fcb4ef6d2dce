"""Start, probe and stop the processes of interop tests and benchmarks.

One place knows how to run ipbx, Kamailio, SIPp and baresip headless on loopback (see
shared/PEERS.md): bench/run.py and tests/interop/conftest.py both import it, so a test and
a benchmark start the server the same way.

Rules every helper keeps: traffic goes to 127.0.0.1 only; ports are picked free, never
assumed (5060 may be taken); every SIPp run is bounded by a call count (-m), a global
timeout (-timeout ... -timeout_error) and -nostdin, and a subprocess deadline on top; a
process is stopped by its own PID (SIGTERM, then SIGKILL).
"""

from __future__ import annotations

import csv
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

REPO_ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = REPO_ROOT / "bench" / "scenarios"
KAMAILIO_CFG = REPO_ROOT / "bench" / "kamailio" / "kamailio.cfg"
BARESIP_MODULES = Path("/usr/lib/baresip/modules")
LOOPBACK = "127.0.0.1"
REALM = "ipbx"

PortKind = Literal["udp", "tcp", "both"]


class ServerNotReady(RuntimeError):
    """A server process exited or did not answer OPTIONS in time."""


# ---------------------------------------------------------------------------- ports


def _bindable(port: int, kind: PortKind) -> bool:
    kinds: list[int] = []
    if kind in ("udp", "both"):
        kinds.append(socket.SOCK_DGRAM)
    if kind in ("tcp", "both"):
        kinds.append(socket.SOCK_STREAM)
    for sock_type in kinds:
        with socket.socket(socket.AF_INET, sock_type) as sock:
            try:
                sock.bind((LOOPBACK, port))
            except OSError:
                return False
    return True


def free_port(kind: PortKind = "both") -> int:
    """A port that binds on 127.0.0.1 now, for UDP, TCP or both (the default).

    The kernel picks a candidate (bind to port 0) and the other protocol is checked on
    the same number, so a SIP listener can take udp:// and tcp:// on one port.
    """
    first = socket.SOCK_STREAM if kind == "tcp" else socket.SOCK_DGRAM
    for _ in range(200):
        with socket.socket(socket.AF_INET, first) as sock:
            sock.bind((LOOPBACK, 0))
            port: int = sock.getsockname()[1]
        if _bindable(port, kind):
            return port
    raise OSError(f"no free {kind} port on {LOOPBACK}")


def free_udp_range(count: int) -> tuple[int, int]:
    """An even-aligned run of `count` UDP ports below the Linux ephemeral range.

    RTP ports come in pairs (RFC 3550 11: RTP even, RTCP odd), so the range starts even.
    Staying under 32768 keeps them clear of ports the kernel hands to other sockets.
    """
    for _ in range(200):
        start = 10000 + 2 * secrets.randbelow((32768 - 10000 - count) // 2)
        if all(_bindable(port, "udp") for port in range(start, start + count)):
            return start, start + count - 1
    raise OSError(f"no free range of {count} UDP ports on {LOOPBACK}")


# ---------------------------------------------------------------------------- extensions


@dataclass(frozen=True)
class Extension:
    """A PBX extension as the ipbx config and the SIPp injection files know it."""

    number: str
    name: str
    password: str


def extension_range(count: int, first: int = 1000) -> list[Extension]:
    """Extensions first, first+1, ... with password "secret<number>"."""
    return [
        Extension(number=str(n), name=f"User {n}", password=f"secret{n}")
        for n in range(first, first + count)
    ]


def write_users_csv(path: Path, users: Sequence[Extension]) -> Path:
    """A SIPp injection file: extension; password; the whole [authentication] keyword.

    The keyword is carried whole because SIPp 3.6.1 mangles fields nested inside
    [authentication ...] (SIPp issue #640) but parses one that comes from a field.
    """
    lines = ["SEQUENTIAL"]
    lines += [
        f"{u.number};{u.password};[authentication username={u.number} password={u.password}]"
        for u in users
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


# ---------------------------------------------------------------------------- processes


def _pinned(command: list[str], cpu: int | None) -> list[str]:
    return command if cpu is None else ["taskset", "-c", str(cpu), *command]


def _spawn(
    command: list[str],
    cpu: int | None,
    workdir: Path,
    log_path: Path,
    *,
    append: bool = False,
    env: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """Start a server in workdir, pinned to `cpu`, its stdout and stderr in log_path."""
    with log_path.open("ab" if append else "wb") as log:
        return subprocess.Popen(
            _pinned(command, cpu),
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )


def stop_process(process: subprocess.Popen[bytes], timeout: float = 5.0) -> int:
    """SIGTERM the process by its PID, wait, SIGKILL if it is still there."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout)
    return process.returncode


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found: list[int] = []
    todo = [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its live descendants (/proc/PID/stat).

    Kamailio runs as a main process plus forked workers; ipbx may grow media workers.
    """
    ticks = 0
    for member in _descendants(pid):
        try:
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # After the ")" closing comm, field 3 (state) is index 0: utime is field 14,
        # stime field 15 (proc(5)).
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def udp_drops(ports: Sequence[int]) -> int:
    """Datagrams the kernel dropped at full receive buffers of the sockets bound to these
    127.0.0.1 ports (last column of /proc/net/udp)."""
    wanted = {f"{port:04X}" for port in ports}
    drops = 0
    for line in Path("/proc/net/udp").read_text().splitlines()[1:]:
        fields = line.split()
        address, port = fields[1].split(":")
        if address == "0100007F" and port in wanted:
            drops += int(fields[-1])
    return drops


def core_ticks(cpu: int | None) -> list[int]:
    """The jiffies of one core (all cores if None) from /proc/stat, in proc(5)'s order:
    user, nice, system, idle, iowait, irq, softirq, steal, guest, guest_nice."""
    name = "cpu" if cpu is None else f"cpu{cpu}"
    for line in Path("/proc/stat").read_text().splitlines():
        fields = line.split()
        if fields[0] == name:
            return [int(field) for field in fields[1:]]
    raise OSError(f"no {name} in /proc/stat")


def core_times(cpu: int | None) -> tuple[int, int]:
    """Busy and total jiffies of one core (all cores if None), from /proc/stat."""
    ticks = core_ticks(cpu)
    # idle and iowait are fields 4 and 5 (proc(5)).
    return sum(ticks) - ticks[3] - ticks[4], sum(ticks)


@dataclass
class ServerProcess:
    """A SIP server under test, listening on UDP (and TCP for ipbx) at `port`."""

    name: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    workdir: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pid)

    def log_tail(self, lines: int = 60) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> int:
        return stop_process(self.process)


@dataclass
class IpbxServer(ServerProcess):
    data_dir: Path
    rtp_range: tuple[int, int]
    config_path: Path


class IpbxFactory(Protocol):
    """What the interop tests' ipbx_server fixture hands a test."""

    def __call__(self, extensions: int = 2, extra: Sequence[Extension] = ()) -> IpbxServer: ...


def options_probe(port: int, timeout: float = 0.5) -> bool:
    """Send one OPTIONS datagram to 127.0.0.1:port; True on any SIP response."""
    tag = secrets.token_hex(6)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((LOOPBACK, 0))
        local_port = sock.getsockname()[1]
        request = (
            f"OPTIONS sip:{LOOPBACK}:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {LOOPBACK}:{local_port};branch=z9hG4bK-probe-{tag};rport\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:probe@{LOOPBACK}>;tag={tag}\r\n"
            f"To: <sip:{LOOPBACK}:{port}>\r\n"
            f"Call-ID: probe-{tag}@{LOOPBACK}\r\n"
            "CSeq: 1 OPTIONS\r\n"
            f"Contact: <sip:probe@{LOOPBACK}:{local_port}>\r\n"
            "Accept: application/sdp\r\n"
            "Content-Length: 0\r\n\r\n"
        )
        sock.settimeout(timeout)
        sock.sendto(request.encode(), (LOOPBACK, port))
        try:
            data = sock.recv(65535)
        except TimeoutError:
            return False
    return data.startswith(b"SIP/2.0 ")


def wait_ready(server: ServerProcess, timeout: float = 10.0) -> None:
    """Wait until the server answers OPTIONS over UDP; raise ServerNotReady otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            log = server.log_tail()
            hint = "" if log else " without a word: does its entry point run main()?"
            raise ServerNotReady(
                f"{server.name} exited with {server.process.returncode} before answering "
                f"OPTIONS on udp:{LOOPBACK}:{server.port}{hint}\n{log}"
            )
        if options_probe(server.port):
            return
        time.sleep(0.1)
    raise ServerNotReady(
        f"{server.name} did not answer OPTIONS on udp:{LOOPBACK}:{server.port} "
        f"within {timeout:.0f} s\n{server.log_tail()}"
    )


def _yaml_str(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_ipbx_config(
    path: Path,
    *,
    port: int,
    data_dir: Path,
    rtp_range: tuple[int, int],
    extensions: Sequence[Extension],
    echo_test: str = "9196",
    api_port: int | None = None,
) -> Path:
    """The YAML of the `ipbx serve --config` contract (UDP and TCP on one port). With
    `api_port` the REST API and event feed listen on 127.0.0.1:api_port; without it the
    API is off (its default address, 8080, is not ours to take on a shared machine)."""
    lines = [
        f"data_dir: {_yaml_str(str(data_dir))}",
        "sip:",
        f"  listen: [udp://{LOOPBACK}:{port}, tcp://{LOOPBACK}:{port}]",
        f"  realm: {REALM}",
        "media:",
        f"  address: {LOOPBACK}",
        f"  rtp_ports: {rtp_range[0]}-{rtp_range[1]}",
        "extensions:",
    ]
    lines += [
        f"  - {{number: {_yaml_str(e.number)}, name: {_yaml_str(e.name)}, "
        f"password: {_yaml_str(e.password)}}}"
        for e in extensions
    ]
    lines.append(f"echo_test: {_yaml_str(echo_test)}")
    if api_port is None:
        lines += ["api:", "  enabled: false"]
    else:
        lines += ["api:", f"  listen: {LOOPBACK}:{api_port}"]
    path.write_text("\n".join(lines) + "\n")
    return path


def start_ipbx(
    workdir: Path,
    extensions: Sequence[Extension],
    *,
    cpu: int | None = None,
    rtp_ports: int = 1000,
    ready_timeout: float = 10.0,
) -> IpbxServer:
    """Write a config under workdir, run `python -m ipbx.cli serve`, wait for OPTIONS.

    sys.executable is the interpreter of the running venv, so the ipbx under test is the
    one installed there (editable install of src/).
    """
    workdir.mkdir(parents=True, exist_ok=True)
    data_dir = workdir / "data"
    data_dir.mkdir(exist_ok=True)
    port = free_port("both")
    rtp_range = free_udp_range(rtp_ports)
    config_path = write_ipbx_config(
        workdir / "ipbx.yaml",
        port=port,
        data_dir=data_dir,
        rtp_range=rtp_range,
        extensions=extensions,
    )
    return run_ipbx(workdir, config_path, port, rtp_range, cpu=cpu, ready_timeout=ready_timeout)


def run_ipbx(
    workdir: Path,
    config_path: Path,
    port: int,
    rtp_range: tuple[int, int] = (0, 0),
    *,
    cpu: int | None = None,
    ready_timeout: float = 10.0,
) -> IpbxServer:
    """Run `python -m ipbx.cli serve --config config_path` in workdir; `port` is its UDP
    port (for the readiness probe). The log is appended to, so a restarted server keeps
    one log."""
    log_path = workdir / "ipbx.log"
    command = [sys.executable, "-m", "ipbx.cli", "serve", "--config", str(config_path)]
    process = _spawn(
        command, cpu, workdir, log_path, append=True, env={**os.environ, "PYTHONUNBUFFERED": "1"}
    )
    server = IpbxServer(
        name="ipbx",
        port=port,
        process=process,
        log_path=log_path,
        workdir=workdir,
        data_dir=workdir / "data",
        rtp_range=rtp_range,
        config_path=config_path,
    )
    try:
        wait_ready(server, ready_timeout)
    except BaseException:
        server.stop()
        raise
    return server


def start_kamailio(
    workdir: Path,
    *,
    cpu: int | None = None,
    children: int = 2,
    shm_mb: int = 512,
    ready_timeout: float = 10.0,
) -> ServerProcess:
    """Run bench/kamailio/kamailio.cfg in the foreground on a free UDP port."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port("udp")
    log_path = workdir / "kamailio.log"
    command = [
        "kamailio",
        "-f",
        str(KAMAILIO_CFG),
        "-DD",
        "-E",
        "-w",
        str(workdir),
        "-P",
        str(workdir / "kamailio.pid"),
        "-Y",
        str(workdir),
        # Shared memory holds transactions and the location table; the 64 MB default
        # runs out under a call ramp (tm: "out of mem"), so give it what deployments do.
        "-m",
        str(shm_mb),
        "-A",
        f"LISTEN=udp:{LOOPBACK}:{port}",
        "-A",
        f"CHILDREN={children}",
    ]
    process = _spawn(command, cpu, workdir, log_path)
    server = ServerProcess(
        name="kamailio", port=port, process=process, log_path=log_path, workdir=workdir
    )
    try:
        wait_ready(server, ready_timeout)
    except BaseException:
        server.stop()
        raise
    return server


def start_rtpengine(
    workdir: Path,
    *,
    cpu: int | None = None,
    rtp_ports: int = 4000,
    ready_timeout: float = 10.0,
) -> ServerProcess:
    """Run rtpengine in the foreground as a userspace relay (--table=-1: no kernel module)
    with one worker thread, its ng control port (`ServerProcess.port`) and RTP ports
    picked free on 127.0.0.1. --config-file=none keeps /etc/rtpengine/rtpengine.conf
    (the Debian service's ports) out of it; its timeouts outlast a benchmark step."""
    from bench.ng import NgClient, NgError

    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port("udp")
    first, last = free_udp_range(rtp_ports)
    log_path = workdir / "rtpengine.log"
    command = [
        "rtpengine",
        "--config-file=none",
        "--foreground",
        "--log-stderr",
        "--log-level=3",
        "--table=-1",
        f"--interface={LOOPBACK}",
        f"--listen-ng={LOOPBACK}:{port}",
        f"--port-min={first}",
        f"--port-max={last}",
        "--num-threads=1",
        "--timeout=600",
        "--delete-delay=0",
    ]
    process = _spawn(command, cpu, workdir, log_path)
    server = ServerProcess(
        name="rtpengine", port=port, process=process, log_path=log_path, workdir=workdir
    )
    client = NgClient(port, timeout=0.2, attempts=1)
    try:
        deadline = time.monotonic() + ready_timeout
        while True:
            if process.poll() is not None:
                raise ServerNotReady(
                    f"rtpengine exited with {process.returncode}\n{server.log_tail()}"
                )
            try:
                client.command("ping")
                return server
            except NgError:
                if time.monotonic() > deadline:
                    raise ServerNotReady(
                        f"rtpengine did not answer ng ping on udp:{LOOPBACK}:{port}\n"
                        f"{server.log_tail()}"
                    ) from None
    except BaseException:
        server.stop()
        raise
    finally:
        client.close()


@contextmanager
def running(server: ServerProcess) -> Iterator[ServerProcess]:
    """Stop the server by its PID when the block ends."""
    try:
        yield server
    finally:
        server.stop()


# ---------------------------------------------------------------------------- SIPp


@dataclass(frozen=True)
class SippResult:
    """Totals from the last row of SIPp's -trace_stat CSV (cumulative columns)."""

    returncode: int
    requested: int
    successful: int
    failed: int
    elapsed_s: float
    workdir: Path
    name: str

    @property
    def failed_pct(self) -> float:
        """Calls that failed or never finished (SIPp's -timeout cut them), in percent."""
        if self.requested <= 0:
            return 100.0
        return 100.0 * (self.requested - self.successful) / self.requested

    @property
    def rate(self) -> float:
        """Successful calls per second of SIPp run time."""
        return self.successful / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def errors(self, limit: int = 4000) -> str:
        """The start of SIPp's error log: unexpected messages and timeouts."""
        try:
            return (self.workdir / f"{self.name}.errors.log").read_text(errors="replace")[:limit]
        except OSError:
            return ""


def _epoch(timestamp: str) -> float:
    # SIPp writes times as "date<TAB>time<TAB>epoch.micro".
    return float(timestamp.split("\t")[-1])


def parse_sipp_stats(
    stat_path: Path, returncode: int, requested: int, workdir: Path, name: str
) -> SippResult:
    rows: list[list[str]] = []
    if stat_path.exists():
        with stat_path.open(newline="") as handle:
            rows = [row for row in csv.reader(handle, delimiter=";") if row]
    if len(rows) < 2:
        return SippResult(returncode, requested, 0, 0, 0.0, workdir, name)
    header, last = rows[0], rows[-1]
    column = {title: index for index, title in enumerate(header)}
    return SippResult(
        returncode=returncode,
        requested=requested,
        successful=int(last[column["SuccessfulCall(C)"]]),
        failed=int(last[column["FailedCall(C)"]]),
        elapsed_s=_epoch(last[column["CurrentTime"]]) - _epoch(last[column["StartTime"]]),
        workdir=workdir,
        name=name,
    )


def scenario_path(scenario: str | Path) -> Path:
    """A bare name like "uac_auth" means bench/scenarios/uac_auth.xml."""
    path = Path(scenario)
    if path.suffix != ".xml":
        path = SCENARIOS / f"{scenario}.xml"
    return path


@dataclass
class SippProcess:
    """A SIPp running in the background (a UAS waiting for calls)."""

    process: subprocess.Popen[bytes]
    port: int
    calls: int
    workdir: Path
    name: str
    deadline_s: float

    def finish(self, timeout: float | None = None) -> SippResult:
        """Wait for SIPp to end on its own (-m reached), stop it by PID otherwise."""
        try:
            self.process.wait(self.deadline_s if timeout is None else timeout)
        except subprocess.TimeoutExpired:
            stop_process(self.process)
        return parse_sipp_stats(
            self.workdir / f"{self.name}.stat.csv",
            self.process.returncode,
            self.calls,
            self.workdir,
            self.name,
        )


def _sipp_command(
    scenario: Path,
    target: str | None,
    args: Sequence[str],
    *,
    calls: int,
    local_port: int,
    timeout: float,
    workdir: Path,
    name: str,
) -> list[str]:
    command = ["sipp", "-sf", str(scenario)]
    if target is not None:
        command.append(target)
    command += [
        "-i",
        LOOPBACK,
        "-p",
        str(local_port),
        "-mp",
        str(free_port("udp")),
        "-m",
        str(calls),
        "-timeout",
        f"{max(1, round(timeout))}s",
        "-timeout_error",
        "-nostdin",
        "-trace_stat",
        "-stf",
        str(workdir / f"{name}.stat.csv"),
        "-fd",
        "1",
        "-trace_err",
        "-error_file",
        str(workdir / f"{name}.errors.log"),
        "-max_log_size",
        "1000000",
        *args,
    ]
    return command


def start_sipp(
    scenario: str | Path,
    target: str | None,
    *args: str,
    calls: int,
    workdir: Path,
    local_port: int | None = None,
    timeout: float = 30.0,
    cpu: int | None = None,
    name: str | None = None,
) -> SippProcess:
    """Start SIPp in the background; bounded by -m calls and -timeout."""
    workdir.mkdir(parents=True, exist_ok=True)
    path = scenario_path(scenario)
    run_name = name or f"{path.stem}-{secrets.token_hex(3)}"
    port = local_port if local_port is not None else free_port("udp")
    command = _sipp_command(
        path,
        target,
        args,
        calls=calls,
        local_port=port,
        timeout=timeout,
        workdir=workdir,
        name=run_name,
    )
    with (workdir / f"{run_name}.screen.log").open("wb") as screen:
        process = subprocess.Popen(
            _pinned(command, cpu),
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            stdout=screen,
            stderr=subprocess.STDOUT,
        )
    return SippProcess(process, port, calls, workdir, run_name, deadline_s=timeout + 10.0)


def run_sipp(
    scenario: str | Path,
    target: str | None,
    *args: str,
    calls: int,
    workdir: Path,
    local_port: int | None = None,
    timeout: float = 30.0,
    cpu: int | None = None,
    name: str | None = None,
) -> SippResult:
    """Run SIPp to completion and return its success and failure counts."""
    return start_sipp(
        scenario,
        target,
        *args,
        calls=calls,
        workdir=workdir,
        local_port=local_port,
        timeout=timeout,
        cpu=cpu,
        name=name,
    ).finish()


def register_contact(
    server_port: int,
    user: Extension,
    contact_port: int,
    workdir: Path,
    *,
    timeout: float = 10.0,
) -> SippResult:
    """Register `user` with the Contact 127.0.0.1:contact_port, for a SIPp UAS to bind next.

    register_auth.xml puts SIPp's own address in the Contact, so SIPp runs on the port the
    UAS takes over once this run has ended.
    """
    csv_path = write_users_csv(workdir / f"register-{user.number}.csv", [user])
    return run_sipp(
        "register_auth",
        f"{LOOPBACK}:{server_port}",
        "-inf",
        str(csv_path),
        calls=1,
        workdir=workdir,
        local_port=contact_port,
        timeout=timeout,
        name=f"register-{user.number}-{secrets.token_hex(3)}",
    )


# ---------------------------------------------------------------------------- baresip


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
) -> subprocess.Popen[bytes]:
    """Run baresip headless as `user`, registered at 127.0.0.1:registrar_port.
    `media_encryption` is baresip's `mediaenc` (e.g. "srtp-mand": SDES SRTP or no call).
    `control_port` loads ctrl_tcp on 127.0.0.1:control_port (drive it with BaresipControl).

    It answers automatically, sends `audio_file` (the call hangs up when it ends) and, with
    the sndfile module, records sent and received audio as workdir/snd/dump-*-{enc,dec}.wav.
    `dial` is a number or SIP URI to call at start; `seconds` bounds its life (-t).
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
    config = [
        "poll_method epoll",
        f"sip_listen {LOOPBACK}:{free_port('both')}",
        f"net_interface {LOOPBACK}",
        "audio_player alsa,null",
        "audio_alert alsa,null",
        f"audio_source aufile,{audio_file}",
        f"rtp_ports {rtp_first}-{rtp_last}",
        f"module_path {BARESIP_MODULES}",
        *(f"module {module}" for module in modules),
        f"snd_path {snd_dir}",
        "module_app account.so",
        "module_app menu.so",
    ]
    if control_port is not None:
        config += ["module_app ctrl_tcp.so", f"ctrl_tcp_listen {LOOPBACK}:{control_port}"]
    (config_dir / "config").write_text("\n".join(config) + "\n")
    account = (
        f"<sip:{user.number}@{LOOPBACK}:{registrar_port}>;auth_pass={user.password};"
        f"regint=60;answermode=auto;audio_codecs={codecs}"
        + (f";mediaenc={media_encryption}" if media_encryption else "")
    )
    (config_dir / "accounts").write_text(account + "\n")
    command = ["baresip", "-f", str(config_dir), "-t", str(seconds)]
    if dial is not None:
        target = dial if dial.startswith("sip:") else f"sip:{dial}@{LOOPBACK}:{registrar_port}"
        command += ["-e", f"/dial {target}"]
    with (workdir / f"baresip-{user.number}.log").open("wb") as log:
        return subprocess.Popen(
            command,
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


class BaresipControl:
    """A connection to baresip's ctrl_tcp: each command is a netstring-framed JSON object
    {"command", "params", "token"} taking the long commands of its menu ("sndcode 5"
    presses and releases key 5 in the current call, "hangup" ends it). Replies and
    events ({"event": true, "type": "CALL_DTMF_START", ...}) share the connection."""

    def __init__(self, port: int, timeout: float = 5.0) -> None:
        self.events: list[dict[str, object]] = []
        self._buffer = b""
        self._timeout = timeout
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._sock = socket.create_connection((LOOPBACK, port), timeout=timeout)
                return
            except ConnectionRefusedError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def command(self, command: str, params: str = "") -> str:
        """Send one command, wait for its reply; its `data`, or RuntimeError if not ok.
        Events that arrive meanwhile are kept in `events`."""
        token = secrets.token_hex(4)
        body = json.dumps({"command": command, "params": params, "token": token}).encode()
        self._sock.sendall(b"%d:%s," % (len(body), body))
        while True:
            message = self._next_message()
            if message.get("event"):
                self.events.append(message)
            elif message.get("token") == token:
                if not message.get("ok"):
                    raise RuntimeError(f"baresip refused {command} {params!r}: {message}")
                return str(message.get("data", ""))

    def _next_message(self) -> dict[str, object]:
        # A netstring is "<length>:<bytes>," (the framing ctrl_tcp speaks).
        deadline = time.monotonic() + self._timeout
        while True:
            length, colon, rest = self._buffer.partition(b":")
            if colon and len(rest) > int(length):
                message: dict[str, object] = json.loads(rest[: int(length)])
                self._buffer = rest[int(length) + 1 :]
                return message
            if time.monotonic() > deadline:
                raise TimeoutError(f"no reply from baresip's ctrl_tcp: {self._buffer!r}")
            chunk = self._sock.recv(65536)
            if not chunk:
                raise ConnectionError("baresip closed its ctrl_tcp connection")
            self._buffer += chunk

    def close(self) -> None:
        self._sock.close()
