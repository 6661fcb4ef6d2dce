"""SIPp runs on loopback, each bounded by a call count (-m), a global timeout and
-nostdin, with a subprocess deadline on top; their totals come from SIPp's -trace_stat
CSV."""

from __future__ import annotations

import csv
import secrets
import struct
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ipbx.media.codecs import PCMU, Codec, create_encoder
from tests.support.ports import LOOPBACK, free_port, free_udp_range
from tests.support.processes import REPO_ROOT, pinned, stop_process
from tests.support.server import Extension

SCENARIOS = REPO_ROOT / "bench" / "scenarios"


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
        # SIPp binds four media ports from -mp: audio RTP and RTCP, video RTP and RTCP.
        "-mp",
        str(free_udp_range(4)[0]),
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
            pinned(command, cpu),
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


def write_rtp_pcap(path: Path, frequency: float, seconds: float, codec: Codec = PCMU) -> Path:
    """A pcap of one RTP stream (G.711, PCMU unless told, 20 ms packets) carrying a sine,
    for SIPp's play_pcap_audio, which replays the RTP with its own addresses and ports."""
    t = np.arange(int(8000 * seconds)) / 8000
    payload = create_encoder(codec).encode(np.rint(8000 * np.sin(2 * np.pi * frequency * t)))
    records = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]  # Ethernet
    for index in range(len(payload) // 160):
        header = (0x80, codec.payload_type, index & 0xFFFF, index * 160, 0x1C0FFEE)
        rtp = struct.pack("!BBHII", *header)
        rtp += payload[index * 160 : (index + 1) * 160]
        udp = struct.pack("!HHHH", 10000, 20000, 8 + len(rtp), 0) + rtp
        ip = struct.pack(
            "!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0,
            bytes([127, 0, 0, 1]), bytes([127, 0, 0, 1]),
        ) + udp  # fmt: skip
        frame = b"\0" * 12 + b"\x08\x00" + ip
        when = index * 20_000  # microseconds
        records.append(
            struct.pack("<IIII", when // 1_000_000, when % 1_000_000, len(frame), len(frame))
        )
        records.append(frame)
    path.write_bytes(b"".join(records))
    return path
