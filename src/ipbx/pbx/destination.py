"""Destinations: where a number, a menu option, a time-out or a fallback sends a call.

Routing is data (docs/architecture.md): every such place holds a string `kind:target`, such as
``extension:1001``, ``queue:support`` or ``number:+15551234567``, and ``hangup`` alone.
This module only parses and validates them; running a destination is the router's job.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from urllib.parse import urlsplit


class Kind(Enum):
    EXTENSION = "extension"
    GROUP = "group"
    IVR = "ivr"
    QUEUE = "queue"
    VOICEMAIL = "voicemail"
    CONFERENCE = "conference"
    SCHEDULE = "schedule"
    NUMBER = "number"  # out through a trunk
    ANNOUNCEMENT = "announcement"
    WEBHOOK = "webhook"  # the call flow is asked of an HTTP endpoint, as Twilio does
    HANGUP = "hangup"


# What each kind's target may look like. Extensions and voicemail boxes are dialable
# digits; named objects (groups, menus, queues, conference rooms, schedules, prompts)
# take the names an operator would type in YAML.
_DIGITS = re.compile(r"[0-9]{1,32}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_E164_OR_SHORT = re.compile(r"\+[1-9][0-9]{1,14}|[0-9]{1,15}")
_TARGETS: dict[Kind, tuple[re.Pattern[str], str]] = {
    Kind.EXTENSION: (_DIGITS, "an extension number (digits)"),
    Kind.VOICEMAIL: (_DIGITS, "a mailbox number (digits)"),
    Kind.GROUP: (_NAME, "a group name"),
    Kind.IVR: (_NAME, "a menu name"),
    Kind.QUEUE: (_NAME, "a queue name"),
    Kind.CONFERENCE: (_NAME, "a conference room name"),
    Kind.SCHEDULE: (_NAME, "a schedule name"),
    Kind.ANNOUNCEMENT: (_NAME, "an announcement name"),
    Kind.NUMBER: (_E164_OR_SHORT, "an E.164 number (+15551234567) or short digits"),
}


class DestinationError(ValueError):
    """A destination string that does not parse; the message says what was expected."""


@dataclass(frozen=True, slots=True)
class Destination:
    kind: Kind
    target: str = ""

    @classmethod
    def parse(cls, text: str) -> Destination:
        text = text.strip()
        name, colon, target = text.partition(":")
        try:
            kind = Kind(name.strip().lower())
        except ValueError:
            kinds = ", ".join(k.value for k in Kind)
            raise DestinationError(
                f"unknown destination {text!r}: expected one of {kinds}"
            ) from None
        target = target.strip()
        if kind is Kind.HANGUP:
            if colon and target:
                raise DestinationError(f"{text!r}: hangup takes no target")
            return cls(kind)
        if not target:
            raise DestinationError(f"{text!r}: {kind.value} needs a target, as {kind.value}:...")
        if kind is Kind.WEBHOOK:
            parts = urlsplit(target)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise DestinationError(f"{text!r}: expected an http:// or https:// URL")
            return cls(kind, target)
        pattern, expected = _TARGETS[kind]
        if pattern.fullmatch(target) is None:
            raise DestinationError(f"{text!r}: expected {expected}")
        return cls(kind, target)

    def __str__(self) -> str:
        return self.kind.value if self.kind is Kind.HANGUP else f"{self.kind.value}:{self.target}"
