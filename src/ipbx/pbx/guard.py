"""Bans sources that keep failing digest authentication, as 3CX's IP blocklist, Kamailio's
pike module and fail2ban in front of Asterisk do: a password-guessing scanner (svcrack)
gets a few tries, then silence. Trusted networks are never banned."""

from __future__ import annotations

import ipaddress
import logging
from collections import deque
from collections.abc import Sequence

log = logging.getLogger("ipbx.guard")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class Guard:
    def __init__(
        self,
        failures: int = 10,
        window: float = 60.0,
        ban_seconds: float = 600.0,
        trusted: Sequence[str] = (),
    ) -> None:
        self.failures = failures
        self.window = window
        self.ban_seconds = ban_seconds
        self.trusted: list[Network] = [ipaddress.ip_network(n, strict=False) for n in trusted]
        self.banned: dict[str, float] = {}
        self._recent: dict[str, deque[float]] = {}

    def admits(self, host: str, now: float) -> bool:
        """False while `host` is banned (its messages are dropped unanswered)."""
        until = self.banned.get(host)
        if until is None:
            return True
        if now < until:
            return False
        del self.banned[host]
        log.info("ban on %s lifted", host)
        return True

    def failed(self, host: str, now: float) -> None:
        """Count a failed authentication from `host`; ban it at the limit."""
        if self.failures <= 0 or self._is_trusted(host):
            return
        recent = self._recent.setdefault(host, deque())
        recent.append(now)
        while recent and recent[0] <= now - self.window:
            recent.popleft()
        if len(recent) >= self.failures:
            del self._recent[host]
            self.banned[host] = now + self.ban_seconds
            log.warning(
                "banned %s for %.0f s after %d failed authentications in %.0f s",
                host, self.ban_seconds, self.failures, self.window,
            )  # fmt: skip

    def succeeded(self, host: str) -> None:
        self._recent.pop(host, None)

    def _is_trusted(self, host: str) -> bool:
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(address in network for network in self.trusted)
