"""An extension as the configuration file and the API write it: a phone account, and its
owner's own call handling (voicemail, forwarding, do-not-disturb, caller ID).

The number is the digest username and the address-of-record. Forwarding targets are
destinations, or bare outside numbers; bare digits that are an extension's number mean
that extension, which only the whole file knows (config.py's Config rewrites them,
provisioning does the same with `ForwardConfig.to_extensions`).
"""

from __future__ import annotations

import re
from collections.abc import Container, Iterator
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BeforeValidator, Field, WithJsonSchema

from ipbx.pbx.destination import Destination, Kind
from ipbx.pbx.nat import NatMode
from ipbx.pbx.schema import AS_TEXT, Digits, Email, Item, Model, Name, Where, as_destination

# The conditions an extension's calls can be forwarded on, in the file's order.
FORWARD_KEYS = ("always", "busy", "no_answer", "unregistered")


def _forward_target(value: Any) -> Any:
    """A forwarding target: a destination, or a bare outside number (``+15551234567``).

    Bare digits equal to an extension's number were already turned into
    ``extension:N`` by Config._forward_to_extensions, which knows the extensions.
    """
    if isinstance(value, str) and re.fullmatch(r"\+?[0-9]{1,15}", value.strip()):
        return Destination(Kind.NUMBER, value.strip())
    return as_destination(value)


ForwardTarget = Annotated[
    Destination,
    BeforeValidator(_forward_target),
    AS_TEXT,
    WithJsonSchema({"type": "string", "description": "a destination or an outside number"}),
]


class VoicemailConfig(Model):
    """An extension's mailbox: the PIN its owner dials in with, and where to mail messages."""

    pin: Annotated[str, Field(pattern=r"^[0-9]{1,16}$")] = Field(repr=False)
    email: Email | None = None


class ForwardConfig(Model):
    """Where an extension's calls go instead: always, when busy (or DND), when nobody
    answers within `no_answer_seconds`, or when no phone is registered."""

    always: ForwardTarget | None = None
    busy: ForwardTarget | None = None
    no_answer: ForwardTarget | None = None
    unregistered: ForwardTarget | None = None
    no_answer_seconds: int = Field(default=20, ge=1, le=600)

    def to_extensions(self, numbers: Container[str]) -> ForwardConfig:
        """Bare digits that are one of `numbers` (the extensions) mean that extension,
        as Config._forward_to_extensions reads them in a file."""
        changed = {
            key: Destination(Kind.EXTENSION, target.target)
            for key, target in self.targets()
            if target.kind is Kind.NUMBER and target.target in numbers
        }
        return self.model_copy(update=changed) if changed else self

    def targets(self) -> Iterator[tuple[str, Destination]]:
        for key in FORWARD_KEYS:
            target = getattr(self, key)
            if target is not None:
                yield key, target


class Extension(Item):
    """A phone account; its number is the digest username and the AOR."""

    key_field: ClassVar[str] = "number"
    secrets: ClassVar[frozenset[str]] = frozenset({"password"})

    number: Digits
    name: str = ""
    # repr=False: configs get logged, passwords must not be. Required in a file
    # (Config._check_passwords); the database keeps only digests of it.
    password: str | None = Field(default=None, min_length=4, repr=False)
    # Record every answered call to or from this extension (under data_dir/recordings).
    record: Literal["always", "never"] = "never"
    # SRTP (SDES, RFC 4568): "auto" answers it when the phone offers it and offers it to
    # a phone registered over TLS; "required" refuses calls from the phone that do not
    # offer it (488) and offers it to the phone on any transport.
    srtp: Literal["auto", "required"] = "auto"
    # Where requests to the phone go (pbx/nat.py): "auto" to its Contact unless its
    # REGISTER shows it behind NAT, "force" always to the address its packets come
    # from, "never" always to its Contact.
    nat: NatMode = "auto"
    # Which outbound routes this extension may use (emergency numbers always work).
    permission: Literal["internal", "national", "international"] = "national"
    # Personal call handling (docs/features.md).
    voicemail: VoicemailConfig | None = None
    forward: ForwardConfig = Field(default_factory=ForwardConfig)
    dnd: bool = False
    # The pickup groups the extension is in: its *8 picks up only calls ringing an
    # extension of one of them (none: only those ringing extensions in no group).
    pickup_groups: list[Name] = Field(default_factory=list)
    # The number presented as this extension's caller ID (outside calls, and inside).
    caller_id: Annotated[str, Field(pattern=r"^\+?[0-9]{1,15}$")] | None = None

    def destinations(self) -> Iterator[tuple[Where, Destination]]:
        for key, target in self.forward.targets():
            yield ("forward", key), target
