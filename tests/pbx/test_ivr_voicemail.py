"""The issue's first story, end to end on a live server: a caller reaches the IVR, presses
2, lands in a ring group whose members do not answer, and leaves a voicemail; the
mailbox owner's phone gets a message-waiting NOTIFY and the owner an email with a WAV
that holds the caller's tone."""

from __future__ import annotations

import io
import threading
import time
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ipbx.sip.message import Request, parse_datagram
from tests.support.mailbox import subscribe
from tests.support.media import dominant_frequency
from tests.support.records import call_records
from tests.support.server import IpbxServer, extension_range, start_configured_ipbx
from tests.support.sipclient import SipClient, reply_to
from tests.support.smtp import SmtpServer, run_server
from tests.support.softphone import ipbx_phone, write_tone

CALLER, OWNER, COLLEAGUE = extension_range(3)
CALLER_HZ = 700


class Ringing(threading.Thread):
    """A registered phone that rings (180) and never answers; it answers CANCEL, BYE
    and NOTIFY as a phone does and keeps the NOTIFYs it got."""

    def __init__(self, server: IpbxServer, number: str, password: str) -> None:
        super().__init__(daemon=True)
        self.client = SipClient(server.port, timeout=0.2)
        self.client.timeout = 5
        response = self.client.register(number, password)
        assert response is not None and response.status == 200
        self.notifies: list[Request] = []
        self.invites = 0
        self.stopping = threading.Event()

    def run(self) -> None:
        self.client.sock.settimeout(0.2)
        while not self.stopping.is_set():
            try:
                data = self.client.sock.recv(65535)
            except (TimeoutError, OSError):
                continue
            message = parse_datagram(data)
            if not isinstance(message, Request):
                continue
            if message.method == "INVITE":
                self.invites += 1
                self.client.send(reply_to(message, 180, []))
            elif message.method == "CANCEL":
                self.client.send(reply_to(message, 200, []))
            elif message.method in ("NOTIFY", "BYE"):
                if message.method == "NOTIFY":
                    self.notifies.append(message)
                self.client.send(reply_to(message, 200, []))

    def stop(self) -> None:
        self.stopping.set()
        self.join(2)
        self.client.close()


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    yield from run_server()


def test_ivr_to_group_to_voicemail_with_mwi_and_email(
    tmp_path: Path, smtp_server: SmtpServer
) -> None:
    def edit(config: dict[str, Any]) -> None:
        config["smtp"] = {"host": "127.0.0.1", "port": smtp_server.port, "from": "pbx@example.com"}
        config["extensions"][1]["voicemail"] = {"pin": "1234", "email": "bob@example.com"}
        config["groups"] = [
            {
                "name": "support",
                "strategy": "ringall",
                "members": [OWNER.number, COLLEAGUE.number],
                "ring_seconds": 3,
                "fallback": f"voicemail:{OWNER.number}",
            }
        ]
        config["ivrs"] = [
            {
                "name": "main",
                "greeting": "Welcome. For sales press 1, for support press 2.",
                "options": {"1": f"extension:{COLLEAGUE.number}", "2": "group:support"},
                "timeout_seconds": 5,
                "retries": 2,
            }
        ]
        config["numbers"] = [{"number": "500", "destination": "ivr:main"}]

    server = start_configured_ipbx(tmp_path / "ipbx", edit)
    owner = Ringing(server, OWNER.number, OWNER.password)
    colleague = Ringing(server, COLLEAGUE.number, COLLEAGUE.password)
    try:
        subscribed = subscribe(owner.client, user=OWNER.number, mailbox=OWNER.number)
        assert subscribed is not None and subscribed.status == 200
        for phone in (owner, colleague):
            phone.start()
        tone = write_tone(tmp_path / "caller.wav", CALLER_HZ, 30)
        with ipbx_phone(
            tmp_path, server.port, CALLER,
            "--call", "500", "--dtmf", "2", "--play", str(tone),
            "--duration", "22", "--timeout", "40",
        ) as caller:  # fmt: skip
            status, _ = caller.finish(timeout=45)
        assert status == 0, caller.log
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not (
            smtp_server.inbox.messages and _waiting(owner.notifies)
        ):
            time.sleep(0.2)
        assert owner.invites >= 1 and colleague.invites >= 1  # the group rang both
        assert _waiting(owner.notifies), [n.body for n in owner.notifies]
        [(_, recipients, mail)] = smtp_server.inbox.messages
        assert recipients == ["bob@example.com"]
        [attachment] = list(mail.iter_attachments())
        with wave.open(io.BytesIO(attachment.get_content())) as wav:
            rate = wav.getframerate()
            pcm = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
        assert len(pcm) / rate >= 3.0
        assert dominant_frequency(_at_8k(pcm, rate)) == pytest.approx(CALLER_HZ, abs=20)
        [record] = call_records(server)
        assert record.path == "ivr:main,group:support,voicemail:1001"
        assert record.digits == "2"
        messages = list((server.data_dir / "voicemail" / OWNER.number / "new").glob("*.wav"))
        assert len(messages) == 1
    finally:
        owner.stop()
        colleague.stop()
        code = server.stop()
        print(f"--- ipbx (exit {code}) log tail:\n{server.log_tail()}")


def _waiting(notifies: list[Request]) -> bool:
    return any(b"Messages-Waiting: yes" in n.body for n in notifies)


def _at_8k(pcm: np.ndarray, rate: int) -> np.ndarray:
    return pcm[:: rate // 8000] if rate > 8000 else pcm
