"""One media worker process: `python -m ipbx.media.worker FD ADDRESS`, started by the
server (media/workers.py) with its end of the control socket as FD and the media address.

It carries the bridges the server hands it, with the server's own code (bridge.join),
answers each recall with the state its legs got to, and each count with its legs' meter
readings. It reads its messages in order, so a recall is answered after the bridge it
recalls was set up. It exits when the server closes the control socket (or dies); Ctrl-C
on the server's terminal is for the server.
"""

from __future__ import annotations

import asyncio
import logging
import pickle
import signal
import socket
import sys
from functools import partial
from typing import Any

import uvloop

from ipbx.heap import settle
from ipbx.media.bridge import join
from ipbx.media.endpoint import MediaEndpoint
from ipbx.media.handover import Adoption, LegState, leg_state
from ipbx.media.workers import MESSAGE_LIMIT

log = logging.getLogger(__name__)

# Pairs' readings a message: a batch stays well inside one datagram.
COUNT_BATCH = 200

Message = tuple[tuple[Any, ...] | None, list[socket.socket]]


class MediaWorker:
    def __init__(self, control: socket.socket, address: str) -> None:
        self._control = control
        self._address = address
        self._pairs: dict[int, tuple[MediaEndpoint, MediaEndpoint]] = {}
        self._inbox: asyncio.Queue[Message] = asyncio.Queue()

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_reader(self._control.fileno(), self._readable)
        self._send(("ready",))
        try:
            while True:
                message, sockets = await self._inbox.get()
                if message is None:
                    return
                try:
                    await self._handle(message, sockets)
                except Exception:
                    # One bridge that could not be set up (a socket closed meanwhile,
                    # say) is that call's loss, not every call's in this worker.
                    log.exception("%s failed", message[0])
                    for sock in sockets:
                        sock.close()
        finally:
            for a, b in self._pairs.values():
                a.close()
                b.close()

    def _readable(self) -> None:
        try:
            data, fds, _, _ = socket.recv_fds(self._control, MESSAGE_LIMIT, 4, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return
        if not data:
            asyncio.get_running_loop().remove_reader(self._control.fileno())
            self._inbox.put_nowait((None, []))
            return
        sockets = [socket.socket(fileno=fd) for fd in fds]
        self._inbox.put_nowait((pickle.loads(data), sockets))

    async def _handle(self, message: tuple[Any, ...], sockets: list[socket.socket]) -> None:
        kind = message[0]
        if kind == "count":
            self._count()
            return
        pair_id = message[1]
        if kind == "bridge":
            states: list[LegState] = message[2]
            adoption = Adoption(self._address)
            a = await adoption.take(states[0], sockets[0], sockets[1])
            b = await adoption.take(states[1], sockets[2], sockets[3])
            a.on_dtmf = partial(self._dtmf, pair_id, 0)
            b.on_dtmf = partial(self._dtmf, pair_id, 1)
            join(a, b)
            adoption.start()
            self._pairs[pair_id] = (a, b)
        elif kind == "home":
            pair = self._pairs.pop(pair_id, None)
            if pair is None:  # its bridge failed: the server goes on as the legs left
                self._send(("home", pair_id, None))
                return
            a, b = pair
            reply = pickle.dumps(("home", pair_id, [leg_state(a), leg_state(b)]))
            a.close()
            b.close()
            self._control.send(reply)

    def _dtmf(self, pair_id: int, index: int, digit: str) -> None:
        self._send(("dtmf", pair_id, index, digit))

    def _count(self) -> None:
        """Each pair's meter readings, for the server (its media time-out, /metrics)."""
        readings = [
            (pair_id, a.meter.reading(), b.meter.reading())
            for pair_id, (a, b) in self._pairs.items()
        ]
        for start in range(0, len(readings), COUNT_BATCH):
            self._send(("counts", readings[start : start + COUNT_BATCH]))

    def _send(self, message: tuple[Any, ...]) -> None:
        self._control.send(pickle.dumps(message))


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=logging.WARNING, format="media worker: %(message)s")
    control = socket.socket(fileno=int(sys.argv[1]))
    # Sends wait for the server at most this long (it reads at once; it is gone else).
    control.settimeout(10)
    settle()
    uvloop.run(MediaWorker(control, sys.argv[2]).serve())


if __name__ == "__main__":
    main()
