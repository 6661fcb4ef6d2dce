"""Network namespaces as separate machines for the first-hour test (tests/interop/
test_first_hour.py): each has its own loopback and addresses, joined by a veth pair as
two hosts on one LAN. Kept minimal; tests/support/netns.py has the NAT topologies."""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, timeout=10, capture_output=True)


class Namespace:
    """`ip netns add` on entry (a random suffix keeps parallel runs apart), deleted on
    exit with its links; programs run in it with `start`."""

    def __init__(self, prefix: str) -> None:
        self.name = f"{prefix}-{secrets.token_hex(3)}"

    def __enter__(self) -> Namespace:
        _ip("netns", "add", self.name)
        _ip("-n", self.name, "link", "set", "lo", "up")
        return self

    def __exit__(self, *exc: object) -> None:
        _ip("netns", "delete", self.name)

    def start(
        self, command: Sequence[str], log: Path, env: Mapping[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        """Run `command` in the namespace, output to `log`, leading a session of its own
        (stop it and its children with os.killpg(process.pid, ...))."""
        with log.open("wb") as out:
            return subprocess.Popen(
                ["ip", "netns", "exec", self.name, *command],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})},
                start_new_session=True,
            )


def join(a: Namespace, a_address: str, b: Namespace, b_address: str, prefix: int = 24) -> None:
    """A veth pair between `a` and `b`, with these addresses, up."""
    end_a, end_b = f"v{secrets.token_hex(4)}", f"v{secrets.token_hex(4)}"
    _ip("link", "add", end_a, "netns", a.name, "type", "veth", "peer", "name", end_b,
        "netns", b.name)  # fmt: skip
    for namespace, end, address in ((a, end_a, a_address), (b, end_b, b_address)):
        _ip("-n", namespace.name, "addr", "add", f"{address}/{prefix}", "dev", end)
        _ip("-n", namespace.name, "link", "set", end, "up")
