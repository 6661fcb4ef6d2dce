"""Kamailio, run in the foreground on a free loopback port."""

from __future__ import annotations

from pathlib import Path

from tests.support.ports import LOOPBACK, free_port
from tests.support.processes import REPO_ROOT, ServerProcess, spawn, wait_ready

KAMAILIO_CFG = REPO_ROOT / "bench" / "kamailio" / "kamailio.cfg"


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
