"""rtpengine, the media relay the benchmark compares ipbx with: started in the foreground
on loopback, and driven over its ng control protocol, bencoded dictionaries over UDP.

A request is one datagram `COOKIE <bencoded dict>` and the answer repeats the cookie:
`COOKIE <bencoded dict>` (rtpengine's README, "ng Control Protocol"). Bencode is
BitTorrent's encoding (BEP 3): `i42e` integers, `4:spam` byte strings, `l...e` lists and
`d...e` dictionaries with keys sorted as raw byte strings.
"""

from __future__ import annotations

import secrets
import socket
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from tests.support.ports import LOOPBACK, free_port, free_udp_range
from tests.support.processes import ServerNotReady, ServerProcess, spawn

Bencodable = int | str | bytes | Sequence["Bencodable"] | Mapping[str, "Bencodable"]
Decoded = int | bytes | list["Decoded"] | dict[bytes, "Decoded"]


class BencodeError(ValueError):
    """Bytes that are not one well-formed bencoded value."""


class NgError(RuntimeError):
    """rtpengine answered with result "error", or not at all."""


def bencode(value: Bencodable) -> bytes:
    if isinstance(value, bool):
        raise TypeError("bencode has no booleans")
    if isinstance(value, int):
        return b"i%de" % value
    if isinstance(value, str):
        value = value.encode()
    if isinstance(value, bytes):
        return b"%d:%s" % (len(value), value)
    if isinstance(value, Mapping):
        items = sorted((key.encode(), item) for key, item in value.items())
        return b"d" + b"".join(bencode(key) + bencode(item) for key, item in items) + b"e"
    return b"l" + b"".join(bencode(item) for item in value) + b"e"


def bdecode(data: bytes) -> Decoded:
    """Decode exactly one value; trailing bytes are an error."""
    value, end = _decode(data, 0)
    if end != len(data):
        raise BencodeError(f"{len(data) - end} bytes after the value")
    return value


def _decode(data: bytes, start: int) -> tuple[Decoded, int]:
    if start >= len(data):
        raise BencodeError("truncated")
    lead = data[start : start + 1]
    if lead == b"i":
        end = data.find(b"e", start)
        if end < 0:
            raise BencodeError("unterminated integer")
        try:
            return int(data[start + 1 : end]), end + 1
        except ValueError as exc:
            raise BencodeError(f"bad integer at {start}") from exc
    if lead == b"l":
        items: list[Decoded] = []
        position = start + 1
        while data[position : position + 1] != b"e":
            item, position = _decode(data, position)
            items.append(item)
        return items, position + 1
    if lead == b"d":
        mapping: dict[bytes, Decoded] = {}
        position = start + 1
        while data[position : position + 1] != b"e":
            key, position = _decode(data, position)
            if not isinstance(key, bytes):
                raise BencodeError(f"dictionary key at {position} is not a string")
            mapping[key], position = _decode(data, position)
        return mapping, position + 1
    if lead.isdigit():
        colon = data.find(b":", start)
        if colon < 0:
            raise BencodeError("string without a length")
        try:
            length = int(data[start:colon])
        except ValueError as exc:
            raise BencodeError(f"bad string length at {start}") from exc
        end = colon + 1 + length
        if end > len(data):
            raise BencodeError("truncated string")
        return data[colon + 1 : end], end
    raise BencodeError(f"unexpected {lead!r} at {start}")


def ng_request(cookie: bytes, command: Mapping[str, Bencodable]) -> bytes:
    return cookie + b" " + bencode(command)


def ng_response(datagram: bytes) -> tuple[bytes, dict[bytes, Decoded]]:
    """Split an answer into its cookie and its dictionary."""
    cookie, space, body = datagram.partition(b" ")
    if not space:
        raise BencodeError("no cookie")
    value = bdecode(body)
    if not isinstance(value, dict):
        raise BencodeError("the answer is not a dictionary")
    return cookie, value


class NgClient:
    """A blocking ng client on 127.0.0.1: one request at a time, resent on silence."""

    def __init__(self, port: int, timeout: float = 1.0, attempts: int = 3) -> None:
        self._address = ("127.0.0.1", port)
        self._timeout = timeout
        self._attempts = attempts
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(("127.0.0.1", 0))

    def close(self) -> None:
        self._sock.close()

    def command(self, name: str, **arguments: Bencodable) -> dict[bytes, Decoded]:
        """Send {"command": name, ...}; the answer's dictionary, result "ok" or "pong"."""
        cookie = secrets.token_hex(8).encode()
        request = ng_request(cookie, {"command": name, **arguments})
        self._sock.settimeout(self._timeout)
        for _ in range(self._attempts):
            self._sock.sendto(request, self._address)
            try:
                while True:
                    got, answer = ng_response(self._sock.recv(65535))
                    if got == cookie:
                        break
            except TimeoutError:
                continue
            result = answer.get(b"result")
            if result not in (b"ok", b"pong"):
                reason = answer.get(b"error-reason", result)
                raise NgError(f"{name}: {reason!r}")
            return answer
        raise NgError(f"{name}: no answer from 127.0.0.1:{self._address[1]}")


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
    process = spawn(command, cpu, workdir, log_path)
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
