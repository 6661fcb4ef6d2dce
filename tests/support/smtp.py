"""A real SMTP server (aiosmtpd) on a loopback port that keeps what it is given, and
the SMTP settings that point ipbx's mailer at it."""

from __future__ import annotations

import email
import email.policy
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from ipbx.pbx.mailer import SmtpConfig
from tests.support.ports import LOOPBACK, free_port


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


def smtp(port: int, **kw: Any) -> SmtpConfig:
    return SmtpConfig.model_validate(
        {"host": LOOPBACK, "port": port, "from": "pbx@example.com", "timeout": 5, **kw}
    )
