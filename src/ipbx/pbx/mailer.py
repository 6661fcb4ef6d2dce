"""Mail out through the configured SMTP server: voicemail to email, with the message's
audio attached.

The standard library does the work (smtplib, email): a message is built as MIME
(RFC 2045) with the WAV as an ``audio/wav`` attachment, and sent in a worker thread
(asyncio.to_thread), so a slow or unreachable mail server holds up no call. STARTTLS
(RFC 3207) and login (RFC 4954) are used when configured. Every failure comes out as
one MailError; the caller decides what losing the email means (for voicemail: a log
line, the message itself is already safe on disk).
"""

from __future__ import annotations

import asyncio
import mimetypes
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path

from pydantic import ConfigDict, Field, model_validator

from ipbx.pbx.schema import Email, Model


class SmtpConfig(Model):
    """The mail server voicemail-to-email goes through (STARTTLS and login optional)."""

    # `from` is the key in the file; it is a Python keyword, so the attribute is `sender`.
    model_config = ConfigDict(serialize_by_alias=True, validate_by_name=True)

    host: str = Field(min_length=1)
    port: int = Field(default=25, ge=1, le=65535)
    sender: Email = Field(alias="from")
    username: str | None = None
    password: str | None = Field(default=None, repr=False)
    starttls: bool = False
    # Check the server's certificate on STARTTLS; false accepts a self-signed one (a
    # local relay such as Postfix with its default snakeoil certificate).
    tls_verify: bool = True
    timeout: float = Field(default=30.0, gt=0)

    @model_validator(mode="after")
    def _check_login(self) -> SmtpConfig:
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password go together")
        return self


class MailError(Exception):
    """The mail could not be handed to the SMTP server; the message says why."""


class Mailer:
    def __init__(self, smtp: SmtpConfig) -> None:
        self.smtp = smtp

    async def send(self, to: str, subject: str, text: str, attachment: Path | None = None) -> None:
        """Send a plain-text mail to `to`, with `attachment` (a file) if given."""
        message = self.build(to, subject, text, attachment)
        await asyncio.to_thread(self._deliver, message)

    def build(
        self, to: str, subject: str, text: str, attachment: Path | None = None
    ) -> EmailMessage:
        message = EmailMessage()
        message["From"] = self.smtp.sender
        message["To"] = to
        message["Subject"] = subject
        message["Date"] = formatdate(localtime=True)
        message["Message-ID"] = make_msgid(domain=self.smtp.sender.rpartition("@")[2])
        message.set_content(text)
        if attachment is not None:
            try:
                data = attachment.read_bytes()
            except OSError as exc:
                raise MailError(f"cannot attach {attachment}: {exc.strerror or exc}") from exc
            maintype, subtype = _mime_type(attachment).split("/", 1)
            message.add_attachment(data, maintype, subtype, filename=attachment.name)
        return message

    def _deliver(self, message: EmailMessage) -> None:
        smtp = self.smtp
        try:
            with smtplib.SMTP(smtp.host, smtp.port, timeout=smtp.timeout) as client:
                if smtp.starttls:
                    context = ssl.create_default_context()
                    if not smtp.tls_verify:
                        context.check_hostname = False
                        context.verify_mode = ssl.CERT_NONE
                    client.starttls(context=context)
                if smtp.username is not None and smtp.password is not None:
                    client.login(smtp.username, smtp.password)
                client.send_message(message)
        except (smtplib.SMTPException, OSError) as exc:
            raise MailError(f"mail to {message['To']} via {smtp.host}:{smtp.port}: {exc}") from exc


def _mime_type(path: Path) -> str:
    # audio/wav (RFC 2361's audio/vnd.wave is rarely understood); mimetypes says
    # audio/x-wav, which some mail clients will not offer to play.
    if path.suffix.lower() == ".wav":
        return "audio/wav"
    guessed, _ = mimetypes.guess_type(path.name)
    return guessed or "application/octet-stream"
