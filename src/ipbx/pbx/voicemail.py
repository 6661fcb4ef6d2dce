"""Voicemail storage: one mailbox per extension that has `voicemail:` configured.

On disk, under ``DATA_DIR/voicemail/<extension>/``::

    new/<id>.wav, new/<id>.json      messages not yet listened to
    saved/<id>.wav, saved/<id>.json  messages kept after listening ("old" in RFC 3842)
    greetings/unavailable.wav, greetings/busy.wav
    tmp/                             recordings in progress

The WAV is the message; the JSON beside it (caller, time received, length) describes
it. Every file is written under a temporary name in the same file system and renamed
into place (os.replace), so a crash leaves either the old state or the new one, never a
half-written file. The WAV is moved in before its JSON is written, and a WAV whose JSON
is missing is still listed (caller unknown, time from the file): a message is never
lost to a crash between the two.

Each change (a message delivered, saved or deleted) is reported through `notify(mailbox,
new, old)` (message waiting indication), and a new message is mailed with its WAV
attached when the mailbox has an email address and an SMTP server is configured; a mail
that fails is logged, the message stays in the mailbox.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import secrets
import shutil
import tempfile
import wave
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from ipbx.pbx.extension import Extension
from ipbx.pbx.mailer import Mailer, MailError

log = logging.getLogger("ipbx.voicemail")

Folder = Literal["new", "saved"]
GreetingKind = Literal["unavailable", "busy"]
FOLDERS: tuple[Folder, ...] = ("new", "saved")

# notify(mailbox, new, old): the counts after a change, for message waiting indication.
Notify = Callable[[str, int, int], None]


@dataclass(frozen=True, slots=True)
class Message:
    id: str  # sortable: the UTC time received, then a random suffix
    mailbox: str
    folder: Folder
    path: Path  # the WAV
    caller: str
    received: datetime  # aware, UTC
    seconds: float

    @property
    def metadata_path(self) -> Path:
        return self.path.with_suffix(".json")


class Mailbox:
    def __init__(
        self,
        number: str,
        directory: Path,
        pin: str,
        email: str | None,
        name: str,
        mailer: Mailer | None,
        notify: Notify,
    ) -> None:
        self.number = number
        self.directory = directory
        self.pin = pin
        self.email = email
        self.name = name
        self._mailer = mailer
        self._notify = notify

    def __repr__(self) -> str:
        return f"Mailbox({self.number!r}, {str(self.directory)!r})"

    # --- greetings ------------------------------------------------------------------------

    def greeting_path(self, kind: GreetingKind) -> Path:
        """Where the owner's recorded `kind` greeting is kept (its folder exists)."""
        folder = self.directory / "greetings"
        folder.mkdir(parents=True, exist_ok=True)
        return folder / f"{kind}.wav"

    def greeting(self, kind: GreetingKind) -> Path | None:
        """The owner's recorded `kind` greeting, if there is one."""
        path = self.directory / "greetings" / f"{kind}.wav"
        return path if path.is_file() else None

    def save_greeting(self, kind: GreetingKind, recorded: Path) -> Path:
        """Put a greeting recorded at `recorded` (e.g. new_message_path()) in place."""
        path = self.greeting_path(kind)
        _move(recorded, path)
        return path

    # --- messages -------------------------------------------------------------------------

    def new_message_path(self) -> Path:
        """A fresh temporary WAV path to record into, on the mailbox's file system."""
        folder = self.directory / "tmp"
        folder.mkdir(parents=True, exist_ok=True)
        return folder / f"{secrets.token_hex(8)}.wav"

    async def deliver(self, path: Path, caller: str, seconds: float) -> Message:
        """File the recording at `path` as a new message from `caller`, signal it and
        mail it. The message is safe on disk before anyone is told."""
        received = datetime.now(UTC)
        message_id = f"{received:%Y%m%dT%H%M%S%fZ}-{secrets.token_hex(3)}"
        folder = self.directory / "new"
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / f"{message_id}.wav"
        _move(path, target)
        message = Message(message_id, self.number, "new", target, caller, received, seconds)
        _write_atomically(
            message.metadata_path,
            json.dumps(
                {"caller": caller, "received": received.isoformat(), "seconds": seconds},
                indent=1,
            ),
        )
        log.info("voicemail %s for %s from %s (%.1f s)", message_id, self.number, caller,
                 seconds)  # fmt: skip
        self._changed()
        await self._mail(message)
        return message

    def counts(self) -> tuple[int, int]:
        """(new, old): how many messages are in the new and saved folders."""
        return (
            sum(1 for _ in (self.directory / "new").glob("*.wav")),
            sum(1 for _ in (self.directory / "saved").glob("*.wav")),
        )

    def messages(self, folder: Folder) -> list[Message]:
        """The messages of `folder`, oldest first (the order a mailbox menu plays them)."""
        directory = self.directory / folder
        found = [self._read(folder, wav) for wav in directory.glob("*.wav")]
        return sorted(found, key=lambda m: (m.received, m.id))

    def find(self, message_id: str) -> Message | None:
        """The message with this id, in either folder. The id is compared with the
        names found on disk, never joined to a path: no id reaches outside the mailbox."""
        for folder in FOLDERS:
            for wav in (self.directory / folder).glob("*.wav"):
                if wav.stem == message_id:
                    return self._read(folder, wav)
        return None

    def mark_saved(self, message: Message) -> Message:
        """Move a message from new to saved (after it was listened to)."""
        if message.folder == "saved":
            return message
        folder = self.directory / "saved"
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / message.path.name
        _move(message.path, target)
        moved = Message(
            message.id, self.number, "saved", target, message.caller, message.received,
            message.seconds,
        )  # fmt: skip
        if message.metadata_path.exists():
            _move(message.metadata_path, moved.metadata_path)
        self._changed()
        return moved

    def delete(self, message: Message) -> None:
        # The JSON first: a crash in between leaves a WAV, which is still listed.
        message.metadata_path.unlink(missing_ok=True)
        message.path.unlink(missing_ok=True)
        self._changed()

    def _read(self, folder: Folder, wav: Path) -> Message:
        meta: dict[str, object] = {}
        try:
            loaded = json.loads(wav.with_suffix(".json").read_text(encoding="utf-8"))
            if isinstance(loaded, dict):
                meta = loaded
        except (OSError, ValueError):
            pass  # no or unreadable metadata: the recording itself still counts
        caller = meta.get("caller")
        seconds = meta.get("seconds")
        received = _parse_time(meta.get("received"))
        if received is None:
            received = datetime.fromtimestamp(wav.stat().st_mtime, UTC)
        return Message(
            id=wav.stem,
            mailbox=self.number,
            folder=folder,
            path=wav,
            caller=caller if isinstance(caller, str) else "unknown",
            received=received,
            seconds=float(seconds) if isinstance(seconds, int | float) else _wav_seconds(wav),
        )

    def _changed(self) -> None:
        new, old = self.counts()
        try:
            self._notify(self.number, new, old)
        except Exception:
            log.exception("message waiting notification for %s failed", self.number)

    async def _mail(self, message: Message) -> None:
        if self.email is None or self._mailer is None:
            return
        when = message.received.astimezone().strftime("%Y-%m-%d %H:%M")
        owner = f"{self.number} ({self.name})" if self.name else self.number
        try:
            await self._mailer.send(
                self.email,
                f"New voicemail from {message.caller} ({message.seconds:.0f} s)",
                f"Mailbox {owner} has a new message from {message.caller}, received "
                f"{when}, {message.seconds:.0f} seconds long. The recording is attached.\n",
                message.path,
            )
        except MailError as exc:
            log.warning("voicemail %s for %s not mailed: %s", message.id, self.number, exc)
        except Exception:
            log.exception("voicemail %s for %s not mailed", message.id, self.number)


class Mailboxes:
    """The mailboxes of every extension with `voicemail:` in the configuration."""

    def __init__(
        self,
        data_dir: Path,
        extensions: Iterable[Extension],
        mailer: Mailer | None,
        notify: Notify,
    ) -> None:
        self.directory = data_dir / "voicemail"
        self._mailer = mailer
        self._notify = notify
        self._boxes: dict[str, Mailbox] = {}
        self.update(extensions)

    def update(self, extensions: Iterable[Extension]) -> None:
        """Take up changed extensions: a mailbox whose extension lost `voicemail:` is
        no longer reachable; its messages stay on disk."""
        self._boxes = {
            e.number: Mailbox(
                e.number,
                self.directory / e.number,
                e.voicemail.pin,
                e.voicemail.email,
                e.name,
                self._mailer,
                self._notify,
            )
            for e in extensions
            if e.voicemail is not None
        }

    def get(self, number: str) -> Mailbox | None:
        return self._boxes.get(number)

    def counts(self, number: str) -> tuple[int, int]:
        """(new, old) of `number`'s mailbox; (0, 0) for an extension without one."""
        box = self._boxes.get(number)
        return (0, 0) if box is None else box.counts()

    def __iter__(self) -> Iterator[Mailbox]:
        return iter(self._boxes.values())

    def __len__(self) -> int:
        return len(self._boxes)


def _move(source: Path, target: Path) -> None:
    """Move `source` to `target` atomically; across file systems, by a copy into a
    temporary name beside `target` that is then renamed."""
    try:
        os.replace(source, target)
        return
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
    fd, temporary = tempfile.mkstemp(dir=target.parent, suffix=".part")
    os.close(fd)
    try:
        shutil.copyfile(source, temporary)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    source.unlink()


def _write_atomically(path: Path, text: str) -> None:
    fd, temporary = tempfile.mkstemp(dir=path.parent, suffix=".part")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _parse_time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _wav_seconds(path: Path) -> float:
    with contextlib.suppress(OSError, wave.Error, EOFError), wave.open(str(path)) as wav:
        rate = wav.getframerate()
        return wav.getnframes() / rate if rate else 0.0
    return 0.0
