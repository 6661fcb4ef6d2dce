"""Start, probe, measure and stop the server processes of interop tests and benchmarks.

Each peer (ipbx, SIPp, Kamailio, rtpengine, baresip) has its module beside this one;
bench/run.py and the tests import the same ones, so a test and a benchmark start a server
the same way, headless on loopback (see shared/PEERS.md).

Rules every helper keeps: traffic goes to 127.0.0.1 only; ports are picked free, never
assumed (5060 may be taken); every SIPp run is bounded by a call count (-m), a global
timeout (-timeout ... -timeout_error) and -nostdin, and a subprocess deadline on top; a
process is stopped by its own PID (SIGTERM, then SIGKILL).
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support.ports import LOOPBACK

REPO_ROOT = Path(__file__).resolve().parents[2]


class ServerNotReady(RuntimeError):
    """A server process exited or did not answer OPTIONS in time."""


def pinned(command: list[str], cpu: int | None) -> list[str]:
    return command if cpu is None else ["taskset", "-c", str(cpu), *command]


def spawn(
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
            pinned(command, cpu),
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


def descendants(pid: int) -> list[int]:
    """A process and all its live descendants (ipbx's media workers, Kamailio's children)."""
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


def memory_of(pid: int) -> tuple[float, float]:
    """VmRSS and VmHWM (the peak RSS so far) of a process, in MB (proc(5): kB)."""
    fields: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0]) / 1024
    return fields["VmRSS"], fields["VmHWM"]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its live descendants (/proc/PID/stat).

    Kamailio runs as a main process plus forked workers; ipbx may grow media workers.
    """
    ticks = 0
    for member in descendants(pid):
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


def core_idle_us(cpu: int | None) -> int | None:
    """Microseconds one core (all cores if None) has spent idle, from cpuidle's counters
    in sysfs, which the kernel keeps exactly; None where there are none. /proc/stat's
    jiffies are sampled at each timer tick (250 Hz here), and a process that wakes on a
    fixed millisecond grid, as bench/rtpload.py does, is seen busy or idle by the ticks
    in proportions that have little to do with its real share."""
    cpus = Path("/sys/devices/system/cpu")
    names = [f"cpu{cpu}"] if cpu is not None else [c.name for c in cpus.glob("cpu[0-9]*")]
    counters = [path for name in names for path in (cpus / name / "cpuidle").glob("state*/time")]
    if not counters:
        return None
    return sum(int(path.read_text()) for path in counters)


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


@contextmanager
def running(server: ServerProcess) -> Iterator[ServerProcess]:
    """Stop the server by its PID when the block ends."""
    try:
        yield server
    finally:
        server.stop()
