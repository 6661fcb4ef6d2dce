"""Voicemail to email against a real SMTP server (aiosmtpd) on a loopback port: the mail
arrives with the WAV attached byte for byte, through STARTTLS and login when asked, and
every way of failing comes out as a MailError."""

from __future__ import annotations

import asyncio
import email
import email.policy
import ssl
import wave
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from ipbx.config import SmtpConfig
from ipbx.pbx.mailer import Mailer, MailError
from ipbx.sip.transport.certs import ensure_self_signed, server_context
from tests.support.ports import free_port

LOOPBACK = "127.0.0.1"


@dataclass
class Inbox:
    """What the SMTP server was given: envelopes, and the logins it accepted."""

    messages: list[tuple[str, list[str], EmailMessage]] = field(default_factory=list)
    logins: list[str] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), parsed))
        return "250 Message accepted for delivery"

    def authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any
    ) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
            b"pbx",
            b"mailsecret",
        )
        if ok:
            self.logins.append(data.login.decode())
        return AuthResult(success=ok, handled=False)


@dataclass
class SmtpServer:
    inbox: Inbox
    port: int


def run_server(tls: ssl.SSLContext | None = None) -> Iterator[SmtpServer]:
    inbox = Inbox()
    port = free_port("tcp")
    controller = Controller(
        inbox,
        hostname=LOOPBACK,
        port=port,
        authenticator=inbox.authenticate,
        auth_require_tls=tls is not None,
        tls_context=tls,
        require_starttls=tls is not None,
    )
    controller.start()
    try:
        yield SmtpServer(inbox, port)
    finally:
        controller.stop()


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    yield from run_server()


@pytest.fixture
def tls_smtp_server(tmp_path: Path) -> Iterator[SmtpServer]:
    cert, key = ensure_self_signed(tmp_path / "tls", "mail.example.com")
    yield from run_server(server_context(cert, key))


def write_message_wav(path: Path, seconds: float = 2.0, hz: float = 700.0) -> Path:
    t = np.arange(int(8000 * seconds)) / 8000
    samples = (8000 * np.sin(2 * np.pi * hz * t)).astype("<i2")
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(8000)
        wav.writeframes(samples.tobytes())
    return path


def smtp(port: int, **kw: Any) -> SmtpConfig:
    return SmtpConfig.model_validate(
        {"host": LOOPBACK, "port": port, "from": "pbx@example.com", "timeout": 5, **kw}
    )


def test_a_voicemail_arrives_with_its_wav_intact(smtp_server: SmtpServer, tmp_path: Path) -> None:
    wav = write_message_wav(tmp_path / "msg0001.wav")
    mailer = Mailer(smtp(smtp_server.port))
    asyncio.run(
        mailer.send(
            "bob@example.com",
            "New voicemail from +15550100",
            "You have a new message (2 s) from +15550100.",
            wav,
        )
    )
    [(sender, recipients, message)] = smtp_server.inbox.messages
    assert (sender, recipients) == ("pbx@example.com", ["bob@example.com"])
    assert message["Subject"] == "New voicemail from +15550100"
    assert message["From"] == "pbx@example.com" and message["Message-ID"]
    body = message.get_body(("plain",))
    assert body is not None and "new message (2 s)" in body.get_content()
    [attachment] = message.iter_attachments()
    assert attachment.get_content_type() == "audio/wav"
    assert attachment.get_filename() == "msg0001.wav"
    received = tmp_path / "received.wav"
    received.write_bytes(attachment.get_content())
    assert received.read_bytes() == wav.read_bytes()
    with wave.open(str(received)) as check:
        assert (check.getframerate(), check.getnframes()) == (8000, 16000)
    assert smtp_server.inbox.logins == []


def test_a_mail_without_attachment(smtp_server: SmtpServer) -> None:
    asyncio.run(Mailer(smtp(smtp_server.port)).send("a@example.com", "Hello", "Text only."))
    [(_, _, message)] = smtp_server.inbox.messages
    assert not message.is_multipart()
    assert message.get_content().strip() == "Text only."


def test_starttls_and_login(tls_smtp_server: SmtpServer, tmp_path: Path) -> None:
    wav = write_message_wav(tmp_path / "msg.wav")
    config = smtp(
        tls_smtp_server.port,
        starttls=True,
        tls_verify=False,
        username="pbx",
        password="mailsecret",
    )
    asyncio.run(Mailer(config).send("bob@example.com", "Voicemail", "See attached.", wav))
    assert tls_smtp_server.inbox.logins == ["pbx"]
    [(_, _, message)] = tls_smtp_server.inbox.messages
    [attachment] = message.iter_attachments()
    assert attachment.get_content() == wav.read_bytes()


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        # The server's certificate is self-signed: refused unless told otherwise.
        ({"starttls": True, "username": "pbx", "password": "mailsecret"}, "CERTIFICATE_VERIFY"),
        ({"starttls": True, "tls_verify": False, "username": "pbx", "password": "bad"}, "535"),
        # The server insists on STARTTLS before anything else.
        ({}, "530"),
    ],
)
def test_failures_are_mail_errors(
    tls_smtp_server: SmtpServer, settings: dict[str, Any], expected: str
) -> None:
    mailer = Mailer(smtp(tls_smtp_server.port, **settings))
    with pytest.raises(MailError, match=expected):
        asyncio.run(mailer.send("bob@example.com", "Voicemail", "text"))
    assert tls_smtp_server.inbox.messages == []


def test_no_server_listening_is_a_mail_error(tmp_path: Path) -> None:
    mailer = Mailer(smtp(free_port("tcp")))
    with pytest.raises(MailError, match="refused"):
        asyncio.run(mailer.send("bob@example.com", "Voicemail", "text"))


def test_a_missing_attachment_is_a_mail_error(smtp_server: SmtpServer, tmp_path: Path) -> None:
    mailer = Mailer(smtp(smtp_server.port))
    with pytest.raises(MailError, match="cannot attach"):
        asyncio.run(mailer.send("bob@example.com", "Voicemail", "text", tmp_path / "gone.wav"))
    assert smtp_server.inbox.messages == []
