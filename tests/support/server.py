"""`ipbx serve` as a process: its configuration file and extensions, started on free
loopback ports, ready once it answers OPTIONS. The interop tests, the server tests and
bench/run.py all start it from here, so a test and a benchmark start the server the same
way."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import yaml

from tests.support.media import media_workers
from tests.support.ports import LOOPBACK, free_port, free_udp_range
from tests.support.processes import ServerProcess, spawn, wait_ready

REALM = "ipbx"


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


CALLER, CALLEE, OTHER = extension_range(3)


@dataclass
class IpbxServer(ServerProcess):
    data_dir: Path
    rtp_range: tuple[int, int]
    config_path: Path


class IpbxFactory(Protocol):
    """What the interop tests' ipbx_server fixture hands a test."""

    def __call__(self, extensions: int = 2, extra: Sequence[Extension] = ()) -> IpbxServer: ...


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
    media: Sequence[str] = (),
    sip: Sequence[str] = (),
    listen: Sequence[str] = (),
) -> Path:
    """The YAML of the `ipbx serve --config` contract (UDP and TCP on one port, and the
    listeners in `listen`, such as `ws://127.0.0.1:PORT`). With
    `api_port` the REST API and event feed listen on 127.0.0.1:api_port; without it the
    API is off (its default address, 8080, is not ours to take on a shared machine).
    `media` and `sip` hold more `KEY: VALUE` lines of those sections."""
    listeners = [f"udp://{LOOPBACK}:{port}", f"tcp://{LOOPBACK}:{port}", *listen]
    lines = [
        f"data_dir: {_yaml_str(str(data_dir))}",
        "sip:",
        f"  listen: [{', '.join(listeners)}]",
        f"  realm: {REALM}",
        *(f"  {line}" for line in sip),
        "media:",
        f"  address: {LOOPBACK}",
        f"  rtp_ports: {rtp_range[0]}-{rtp_range[1]}",
        *(f"  {line}" for line in media),
        *_media_defaults(media),
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


def _media_defaults(media: Sequence[str]) -> list[str]:
    """The media settings a test did not set itself. `make test` runs the suite's servers
    with two media workers, and the media and interop suites again with none
    (IPBX_TEST_MEDIA_WORKERS); unset, a server has the default (auto: the cores it may
    use, less one: none when pinned to one core). IPBX_TEST_MEDIA_RELAY sets
    media.relay (`kernel`, as root: the suites with the kernel forwarding every relay)."""
    lines = []
    count = media_workers()
    if count is not None and not any(line.startswith("workers:") for line in media):
        lines.append(f"  workers: {count}")
    relay = os.environ.get("IPBX_TEST_MEDIA_RELAY")
    if relay and not any(line.startswith("relay:") for line in media):
        lines.append(f"  relay: {relay}")
    return lines


def start_ipbx(
    workdir: Path,
    extensions: Sequence[Extension],
    *,
    cpu: int | None = None,
    rtp_ports: int = 1000,
    ready_timeout: float = 10.0,
    media: Sequence[str] = (),
    sip: Sequence[str] = (),
    listen: Sequence[str] = (),
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
        media=media,
        sip=sip,
        listen=listen,
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
    env: Mapping[str, str] | None = None,
) -> IpbxServer:
    """Run `python -m ipbx.cli serve --config config_path` in workdir; `port` is its UDP
    port (for the readiness probe). The log is appended to, so a restarted server keeps
    one log. `env` is added to the environment (PATH=... hides programs from it)."""
    log_path = workdir / "ipbx.log"
    command = [sys.executable, "-m", "ipbx.cli", "serve", "--config", str(config_path)]
    environment = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    process = spawn(command, cpu, workdir, log_path, append=True, env=environment)
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


def write_config(
    workdir: Path, api_port: int, extra: str = "", extensions: Sequence[Extension] = ()
) -> tuple[Path, int]:
    """An ipbx configuration with the API on `api_port`: its path and the SIP port."""
    port = free_port("both")
    (workdir / "data").mkdir(parents=True, exist_ok=True)
    path = write_ipbx_config(
        workdir / "ipbx.yaml",
        port=port,
        data_dir=workdir / "data",
        rtp_range=free_udp_range(20),
        extensions=list(extensions) or [Extension("1000", "Alice", "secret1000")],
        api_port=api_port,
    )
    with path.open("a") as file:
        file.write(extra)
    return path, port


def make_token(config: Path, scope: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "ipbx.cli", "token", "create", "--config", str(config),
         "--scope", scope],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert "not shown again" in done.stderr
    return done.stdout.strip()


def start_configured_ipbx(
    workdir: Path,
    edit: Callable[[dict[str, Any]], None],
    env: Mapping[str, str] | None = None,
    *,
    extensions: Sequence[Extension] = (CALLER, CALLEE, OTHER),
    cpu: int | None = None,
    rtp_ports: int = 100,
    ready_timeout: float = 10.0,
) -> IpbxServer:
    """ipbx with `extensions` (1000-1002 unless told) and a config changed by `edit`
    (a YAML mapping), run with `env` added to its environment, pinned to `cpu` if given."""
    workdir.mkdir(parents=True, exist_ok=True)
    port, rtp_range = free_port("both"), free_udp_range(rtp_ports)
    path = write_ipbx_config(
        workdir / "ipbx.yaml",
        port=port,
        data_dir=workdir / "data",
        rtp_range=rtp_range,
        extensions=extensions,
    )
    config = yaml.safe_load(path.read_text())
    edit(config)
    path.write_text(yaml.safe_dump(config))
    return run_ipbx(workdir, path, port, rtp_range, cpu=cpu, env=env, ready_timeout=ready_timeout)
