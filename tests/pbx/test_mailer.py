"""Voicemail to email against a real SMTP server (aiosmtpd) on a loopback port: the mail
arrives with the WAV attached byte for byte, through STARTTLS and login when asked, and
every way of failing comes out as a MailError."""

from __future__ import annotations

import asyncio
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ipbx.pbx.mailer import Mailer, MailError
from ipbx.sip.transport.certs import ensure_self_signed, server_context
from tests.support.mailbox import write_message_wav
from tests.support.ports import free_port
from tests.support.smtp import SmtpServer, run_server, smtp


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    yield from run_server()


@pytest.fixture
def tls_smtp_server(tmp_path: Path) -> Iterator[SmtpServer]:
    cert, key = ensure_self_signed(tmp_path / "tls", "mail.example.com")
    yield from run_server(server_context(cert, key))


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
