"""Voicemail mailboxes on disk: a delivered message is filed, counted, signalled and
mailed with its WAV; it survives a restart and a crash half-way through, and a mail
server that fails costs the email, never the message."""

from __future__ import annotations

import asyncio
import logging
import wave
from collections.abc import Iterator
from pathlib import Path

import pytest

from ipbx.pbx.extension import Extension
from ipbx.pbx.mailer import Mailer
from ipbx.pbx.voicemail import Mailbox, Mailboxes
from tests.support.mailbox import write_message_wav
from tests.support.ports import free_port
from tests.support.smtp import SmtpServer, run_server, smtp

EXTENSIONS = [
    Extension.model_validate(
        {
            "number": "1001",
            "name": "Bob",
            "password": "secret1001",
            "voicemail": {"pin": "1234", "email": "bob@example.com"},
        }
    ),
    Extension.model_validate(
        {"number": "1002", "password": "secret1002", "voicemail": {"pin": "0000"}}
    ),
    Extension.model_validate({"number": "1003", "password": "secret1003"}),
]


class Signals:
    def __init__(self) -> None:
        self.seen: list[tuple[str, int, int]] = []

    def __call__(self, mailbox: str, new: int, old: int) -> None:
        self.seen.append((mailbox, new, old))


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    yield from run_server()


def mailboxes(data_dir: Path, signals: Signals, mailer: Mailer | None = None) -> Mailboxes:
    return Mailboxes(data_dir, EXTENSIONS, mailer, signals)


def record(box: Mailbox, seconds: float = 1.5) -> Path:
    """What the voicemail app does: record into the mailbox's temporary path."""
    return write_message_wav(box.new_message_path(), seconds)


def test_only_extensions_with_voicemail_have_a_mailbox(tmp_path: Path) -> None:
    boxes = mailboxes(tmp_path, Signals())
    assert len(boxes) == 2
    bob = boxes.get("1001")
    assert bob is not None and (bob.pin, bob.email) == ("1234", "bob@example.com")
    carol = boxes.get("1002")
    assert carol is not None and carol.email is None
    assert boxes.get("1003") is None and boxes.get("9999") is None
    assert boxes.counts("1003") == (0, 0)
    assert bob.counts() == (0, 0) and bob.messages("new") == []


def test_a_message_is_filed_counted_and_signalled(tmp_path: Path) -> None:
    signals = Signals()
    bob = mailboxes(tmp_path, signals).get("1001")
    assert bob is not None
    recorded = record(bob)
    audio = recorded.read_bytes()
    message = asyncio.run(bob.deliver(recorded, "+15550100", 1.5))
    assert not recorded.exists()
    assert message.path == tmp_path / "voicemail" / "1001" / "new" / f"{message.id}.wav"
    assert message.path.read_bytes() == audio
    assert (message.caller, message.seconds, message.folder) == ("+15550100", 1.5, "new")
    assert message.metadata_path.exists()
    assert signals.seen == [("1001", 1, 0)]
    assert bob.counts() == (1, 0)
    assert bob.messages("new") == [message]
    # No temporary files are left behind.
    assert not list((tmp_path / "voicemail").rglob("*.part"))


def test_listen_save_and_delete(tmp_path: Path) -> None:
    signals = Signals()
    bob = mailboxes(tmp_path, signals).get("1001")
    assert bob is not None
    first = asyncio.run(bob.deliver(record(bob), "1000", 1.5))
    second = asyncio.run(bob.deliver(record(bob), "1002", 2.0))
    assert bob.messages("new") == [first, second]  # oldest first
    saved = bob.mark_saved(first)
    assert saved.folder == "saved" and saved.path.parent.name == "saved"
    assert not first.path.exists() and saved.path.exists() and saved.metadata_path.exists()
    assert (saved.caller, saved.received, saved.seconds) == (
        first.caller,
        first.received,
        first.seconds,
    )
    assert bob.mark_saved(saved) == saved  # saving twice changes nothing
    assert bob.counts() == (1, 1)
    assert bob.messages("saved") == [saved]
    bob.delete(second)
    bob.delete(saved)
    assert bob.counts() == (0, 0)
    assert signals.seen == [("1001", 1, 0), ("1001", 2, 0), ("1001", 1, 1), ("1001", 0, 1),
                            ("1001", 0, 0)]  # fmt: skip
    assert not list((tmp_path / "voicemail" / "1001" / "new").iterdir())


def test_messages_survive_a_restart(tmp_path: Path) -> None:
    bob = mailboxes(tmp_path, Signals()).get("1001")
    assert bob is not None
    delivered = asyncio.run(bob.deliver(record(bob), "+15550100", 1.5))
    saved = bob.mark_saved(asyncio.run(bob.deliver(record(bob), "1000", 1.5)))
    again = mailboxes(tmp_path, Signals()).get("1001")
    assert again is not None
    assert again.counts() == (1, 1)
    assert again.messages("new") == [delivered]
    assert again.messages("saved") == [saved]


def test_a_crash_before_the_metadata_loses_nothing(tmp_path: Path) -> None:
    """A WAV filed without its JSON (the process died in between) is still a message."""
    bob = mailboxes(tmp_path, Signals()).get("1001")
    assert bob is not None
    message = asyncio.run(bob.deliver(record(bob, 2.0), "+15550100", 2.0))
    message.metadata_path.unlink()
    (bob.directory / "new" / "broken.wav").write_bytes(message.path.read_bytes())
    (bob.directory / "new" / "broken.json").write_text("{not json")
    listed = bob.messages("new")
    assert {m.id for m in listed} == {"broken", message.id}
    for found in listed:
        assert (found.caller, found.seconds) == ("unknown", 2.0)
    assert bob.counts() == (2, 0)


def test_greetings_recorded_by_phone(tmp_path: Path) -> None:
    bob = mailboxes(tmp_path, Signals()).get("1001")
    assert bob is not None
    assert bob.greeting("unavailable") is None and bob.greeting("busy") is None
    assert bob.greeting_path("busy") == bob.directory / "greetings" / "busy.wav"
    assert bob.greeting_path("busy").parent.is_dir()
    recorded = record(bob, 1.0)
    path = bob.save_greeting("unavailable", recorded)
    assert bob.greeting("unavailable") == path and not recorded.exists()
    with wave.open(str(path)) as wav:
        assert wav.getnframes() == 8000
    assert bob.greeting("busy") is None


def test_a_new_message_is_mailed_with_its_wav(smtp_server: SmtpServer, tmp_path: Path) -> None:
    signals = Signals()
    bob = mailboxes(tmp_path, signals, Mailer(smtp(smtp_server.port))).get("1001")
    assert bob is not None
    message = asyncio.run(bob.deliver(record(bob), "+15550100", 1.5))
    [(_, recipients, mail)] = smtp_server.inbox.messages
    assert recipients == ["bob@example.com"]
    assert "+15550100" in mail["Subject"]
    [attachment] = mail.iter_attachments()
    assert attachment.get_filename() == f"{message.id}.wav"
    assert attachment.get_content() == message.path.read_bytes()
    # A mailbox without an address is not mailed.
    carol = mailboxes(tmp_path, signals, Mailer(smtp(smtp_server.port))).get("1002")
    assert carol is not None
    asyncio.run(carol.deliver(record(carol), "1001", 1.5))
    assert len(smtp_server.inbox.messages) == 1


def test_a_failed_mail_keeps_the_message(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    signals = Signals()
    nowhere = Mailer(smtp(free_port("tcp")))
    bob = mailboxes(tmp_path, signals, nowhere).get("1001")
    assert bob is not None
    with caplog.at_level(logging.WARNING, "ipbx.voicemail"):
        message = asyncio.run(bob.deliver(record(bob), "+15550100", 1.5))
    assert "not mailed" in caplog.text
    assert message.path.exists() and bob.counts() == (1, 0)
    assert signals.seen == [("1001", 1, 0)]


def test_a_failing_notification_does_not_lose_the_message(tmp_path: Path) -> None:
    def broken(mailbox: str, new: int, old: int) -> None:
        raise RuntimeError("MWI is down")

    bob = Mailboxes(tmp_path, EXTENSIONS, None, broken).get("1001")
    assert bob is not None
    message = asyncio.run(bob.deliver(record(bob), "+15550100", 1.5))
    assert bob.messages("new") == [message]
