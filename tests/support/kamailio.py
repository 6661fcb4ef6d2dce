"""Kamailio run in the foreground on a free loopback port: as the SIP server the benchmark
compares ipbx with (kamailio.cfg), or as a trunk provider (provider.cfg) whose location
table `kamcmd` reads."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.support.ports import LOOPBACK, free_port
from tests.support.processes import REPO_ROOT, ServerProcess, spawn, wait_ready

KAMAILIO_CFG = REPO_ROOT / "bench" / "kamailio" / "kamailio.cfg"
PROVIDER_CFG = REPO_ROOT / "bench" / "kamailio" / "provider.cfg"


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
    process = spawn(command, cpu, workdir, log_path)
    server = ServerProcess(
        name="kamailio", port=port, process=process, log_path=log_path, workdir=workdir
    )
    try:
        wait_ready(server, ready_timeout)
    except BaseException:
        server.stop()
        raise
    return server


def start_provider(workdir: Path, port: int, *defines: str) -> ServerProcess:
    """Kamailio as the provider on udp:127.0.0.1:port, its control socket in workdir;
    `defines` are more -A NAME=VALUE for the cfg (TERMINATION, ...)."""
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / "kamailio.log"
    command = [
        "kamailio", "-f", str(PROVIDER_CFG), "-DD", "-E", "-w", str(workdir),
        "-P", str(workdir / "kamailio.pid"), "-Y", str(workdir),
        "-A", f"LISTEN=udp:{LOOPBACK}:{port}", "-A", f'CTL="unix:{workdir / "ctl"}"',
        *(arg for define in defines for arg in ("-A", define)),
    ]  # fmt: skip
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, cwd=workdir, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
        )
    server = ServerProcess("kamailio", port, process, log_path, workdir)
    try:
        wait_ready(server, 10)
    except BaseException:
        server.stop()
        raise
    return server


def location(provider: ServerProcess) -> str:
    """Kamailio's location table as `kamcmd ul.dump` prints it."""
    result = subprocess.run(
        ["kamcmd", "-s", f"unix:{provider.workdir / 'ctl'}", "ul.dump"],
        capture_output=True,
        text=True,
        timeout=5,
        check=True,
    )
    return result.stdout
