"""A webhook receiver on loopback, as a CRM would run one: it checks the signature and
the timestamp, and keeps each event once by its id (what makes retries exactly-once)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from ipbx.api.webhooks import verify

MAX_AGE = 300  # seconds a timestamp may be old: older is a replay


@dataclass
class Receiver:
    port: int
    secret: str
    status: int = 200  # what to answer (503: "down for maintenance")
    requests: list[dict[str, str]] = field(default_factory=list)
    events: dict[str, dict[str, object]] = field(default_factory=dict)  # by id, in order
    bad_signatures: int = 0
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                headers = {k.lower(): v for k, v in self.headers.items()}
                receiver.requests.append(headers)
                timestamp = headers["x-ipbx-timestamp"]
                fresh = abs(time.time() - int(timestamp)) < MAX_AGE
                if not fresh or not verify(
                    receiver.secret, timestamp, body, headers["x-ipbx-signature"]
                ):
                    receiver.bad_signatures += 1
                    self.send_response(401)
                elif receiver.status != 200:
                    self.send_response(receiver.status)
                else:
                    event = json.loads(body)
                    assert event["id"] == headers["x-ipbx-event-id"]
                    receiver.events.setdefault(event["id"], event)
                    self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def types(self) -> list[object]:
        return [event["type"] for event in self.events.values()]


def events_until(
    receiver: Receiver, done: Callable[[dict[str, list[dict[str, Any]]]], bool]
) -> dict[str, list[dict[str, Any]]]:
    """The `data` of the events received, by type, once `done` says they are all in."""
    deadline = time.monotonic() + 10
    while True:
        by_type: dict[str, list[dict[str, Any]]] = {}
        for event in list(receiver.events.values()):
            data: dict[str, Any] = event["data"]  # type: ignore[assignment]
            by_type.setdefault(str(event["type"]), []).append(data)
        if done(by_type):
            return by_type
        assert time.monotonic() < deadline, f"events so far: {receiver.types()}"
        time.sleep(0.05)
