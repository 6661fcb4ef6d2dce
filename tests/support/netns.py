"""Hosts and a NAT on one machine: Linux network namespaces joined by veth pairs, with an
iptables MASQUERADE router, for the NAT traversal tests. Needs root (CI runs as root).

`NatLab` builds this network, every name unique to the lab and deleted with it:

    lan1 10.77.0.2 --+                                  +-- 198.51.100.1 server 203.0.113.1 --
                     +-- br 10.77.0.1  nat  198.51.100.2 -+                                  |
    lan2 10.77.0.3 --+   (MASQUERADE out of its WAN side)                public 203.0.113.2 --

The server (ipbx) has an address on each of its two networks; the phones in `lan1` and
`lan2` reach it only through the NAT (at 198.51.100.1), the phone in `public` directly (at
203.0.113.1). Every process of a host runs under `ip netns exec` (`Host.command`).
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.processes import REPO_ROOT, ServerNotReady, spawn
from tests.support.server import CALLEE, CALLER, OTHER, IpbxServer, write_ipbx_config

SERVER_WAN = "198.51.100.1"
NAT_WAN = "198.51.100.2"
NAT_WAN_MOVED = "198.51.100.3"
SERVER_PUBLIC = "203.0.113.1"
PUBLIC_PHONE = "203.0.113.2"
NAT_LAN = "10.77.0.1"
LAN1 = "10.77.0.2"
LAN2 = "10.77.0.3"


def can_build_namespaces() -> str | None:
    """None when this process may build namespaces, else why not."""
    if os.geteuid() != 0:
        return "network namespaces need root (CI runs the suite as root)"
    for tool in ("/usr/sbin/ip", "/usr/sbin/iptables"):
        if not os.path.exists(tool):
            return f"{tool} is not installed"
    return None


# The NAT tests' modules: `pytestmark = NEEDS_NAMESPACES` (skipped, saying why, where
# namespaces cannot be built; CI runs as root).
NEEDS_NAMESPACES = pytest.mark.skipif(
    can_build_namespaces() is not None, reason=str(can_build_namespaces())
)


def _run(command: Sequence[str]) -> str:
    done = subprocess.run(command, capture_output=True, text=True, timeout=20)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {done.stderr.strip()}")
    return done.stdout


@dataclass
class Host:
    """One network namespace."""

    name: str
    address: str

    def command(self, command: Sequence[str]) -> list[str]:
        """`command` run inside this host's namespace."""
        return ["ip", "netns", "exec", self.name, *command]

    def run(self, *command: str) -> str:
        return _run(self.command(command))


@dataclass
class NatLab:
    """The network of the module docstring; `close` deletes every namespace of it."""

    random_ports: bool = False
    udp_timeout: int = 30
    tag: str = field(default_factory=lambda: secrets.token_hex(3))
    hosts: list[Host] = field(default_factory=list)

    def __post_init__(self) -> None:
        try:
            self.server = self._host("srv", SERVER_WAN)
            self.nat = self._host("nat", NAT_WAN)
            self.lan1 = self._host("lan1", LAN1)
            self.lan2 = self._host("lan2", LAN2)
            self.public = self._host("pub", PUBLIC_PHONE)
            self._link(self.server, f"{SERVER_WAN}/24", self.nat, f"{NAT_WAN}/24")
            self._link(self.server, f"{SERVER_PUBLIC}/24", self.public, f"{PUBLIC_PHONE}/24")
            self._lan()
            self._masquerade()
        except BaseException:
            self.close()
            raise

    def _host(self, role: str, address: str) -> Host:
        host = Host(f"ipbx-{self.tag}-{role}", address)
        _run(["ip", "netns", "add", host.name])
        self.hosts.append(host)
        host.run("ip", "link", "set", "lo", "up")
        return host

    def _link(self, a: Host, a_address: str, b: Host, b_address: str) -> tuple[str, str]:
        """A veth pair from a to b with these addresses; returns the two interface names."""
        a_if, b_if = f"v{len(self.hosts)}{secrets.token_hex(2)}", f"v{secrets.token_hex(3)}"
        _run(["ip", "link", "add", a_if, "netns", a.name, "type", "veth",
              "peer", "name", b_if, "netns", b.name])  # fmt: skip
        for host, name, address in ((a, a_if, a_address), (b, b_if, b_address)):
            if address:
                host.run("ip", "addr", "add", address, "dev", name)
            host.run("ip", "link", "set", name, "up")
        return a_if, b_if

    def _lan(self) -> None:
        """The private network: a bridge in the NAT's namespace, a phone on each port."""
        nat = self.nat
        nat.run("ip", "link", "add", "br0", "type", "bridge")
        nat.run("ip", "addr", "add", f"{NAT_LAN}/24", "dev", "br0")
        nat.run("ip", "link", "set", "br0", "up")
        for phone in (self.lan1, self.lan2):
            _, nat_if = self._link(phone, f"{phone.address}/24", nat, "")
            nat.run("ip", "link", "set", nat_if, "master", "br0")
            phone.run("ip", "route", "add", "default", "via", NAT_LAN)

    def _masquerade(self) -> None:
        nat = self.nat
        nat.run("sysctl", "-qw", "net.ipv4.ip_forward=1")
        for name in ("nf_conntrack_udp_timeout", "nf_conntrack_udp_timeout_stream"):
            nat.run("sysctl", "-qw", f"net.netfilter.{name}={self.udp_timeout}")
        self.wan = self._wan_interface()
        rule = ["-s", f"{NAT_LAN}/24", "-o", self.wan, "-j", "MASQUERADE"]
        if self.random_ports:
            rule.append("--random")
        nat.run("iptables", "-t", "nat", "-A", "POSTROUTING", *rule)

    def _wan_interface(self) -> str:
        for line in self.nat.run("ip", "-o", "-4", "addr", "show").splitlines():
            fields = line.split()
            if f"{NAT_WAN}/24" in fields:
                return fields[1]
        raise RuntimeError("the NAT has no WAN interface")

    def move_nat(self) -> None:
        """The NAT's public address changes (a new uplink, a carrier-grade NAT that
        re-maps): from now on new mappings leave from NAT_WAN_MOVED. Existing ones stay
        until they time out."""
        nat = self.nat
        nat.run("ip", "addr", "add", f"{NAT_WAN_MOVED}/24", "dev", self.wan)
        nat.run("iptables", "-t", "nat", "-I", "POSTROUTING", "-s", f"{NAT_LAN}/24",
                "-o", self.wan, "-j", "SNAT", "--to-source", NAT_WAN_MOVED)  # fmt: skip

    def close(self) -> None:
        for host in reversed(self.hosts):
            subprocess.run(["ip", "netns", "del", host.name], capture_output=True, timeout=20)
        self.hosts.clear()


_PROBE = (
    "import sys\n"
    "from tests.support.processes import options_probe\n"
    "sys.exit(0 if options_probe(int(sys.argv[1])) else 1)\n"
)


def run_ipbx_in(
    host: Host,
    workdir: Path,
    listen: Sequence[str] = ("udp://0.0.0.0:5060",),
    edit: Callable[[dict[str, Any]], None] | None = None,
) -> IpbxServer:
    """ipbx with extensions 1000-1002 serving in `host`'s namespace on `listen` (one of
    them on 127.0.0.1 or every address, for the readiness probe), RTP on every interface
    and SDP addresses chosen per phone (the embedded default), the config changed by
    `edit`. Ready once it answers OPTIONS inside the namespace."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = int(listen[0].rsplit(":", 1)[1])
    path = write_ipbx_config(
        workdir / "ipbx.yaml", port=port, data_dir=workdir / "data", rtp_range=(20000, 20999),
        extensions=[CALLER, CALLEE, OTHER],
    )  # fmt: skip
    config = yaml.safe_load(path.read_text())
    config["sip"]["listen"] = list(listen)
    del config["media"]["address"]
    if edit is not None:
        edit(config)
    path.write_text(yaml.safe_dump(config))
    log_path = workdir / "ipbx.log"
    command = [sys.executable, "-m", "ipbx.cli", "serve", "--config", str(path)]
    process = spawn(host.command(command), None, workdir, log_path)
    server = IpbxServer("ipbx", port, process, log_path, workdir, workdir / "data",
                        (20000, 20999), path)  # fmt: skip
    deadline = time.monotonic() + 15
    probe = host.command([sys.executable, "-c", _PROBE, str(port)])
    while subprocess.run(probe, cwd=REPO_ROOT, capture_output=True, timeout=10).returncode:
        if process.poll() is not None or time.monotonic() > deadline:
            server.stop()
            raise ServerNotReady(f"ipbx in {host.name} did not answer:\n{server.log_tail()}")
        time.sleep(0.2)
    return server
