"""The blacklist: callers whose number matches a pattern hear a message and are hung up on.

A pattern is a number with wildcards: ``*`` stands for any run of digits (none too) and
``?`` for exactly one, so ``+1555666*`` blocks a whole range and ``+15556661234`` one
number; ``anonymous`` blocks callers who withhold their number. An entry with an
`extension` applies to calls to that extension only; one without applies to every call of
the tenant.

Providers write the same caller differently (``+15556661234``, ``15556661234``, or the
national ``05556661234``), so numbers are compared without their ``+`` and, when a
country is configured, also in their E.164 form (dialplan.to_e164).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Annotated, ClassVar, Self

from pydantic import AfterValidator

from ipbx.pbx.dialplan import to_e164
from ipbx.pbx.prompt import Prompt
from ipbx.pbx.schema import Digits, Item, PromptField

ANONYMOUS = "anonymous"
_PATTERN = re.compile(r"\+?[0-9*?]+")
_SEPARATORS = re.compile(r"[\s().-]")


class BlacklistError(ValueError):
    """A pattern that is not a number with wildcards."""


def check_pattern(pattern: str) -> str:
    """`pattern` if it is a valid blacklist pattern; else BlacklistError."""
    text = _SEPARATORS.sub("", pattern)
    if text.lower() == ANONYMOUS:
        return pattern
    if _PATTERN.fullmatch(text) is None or not any(c.isdigit() or c in "*?" for c in text):
        raise BlacklistError(
            f"{pattern!r}: expected a number with * (any digits) and ? (one digit) "
            "wildcards, such as +1555666*, or 'anonymous'"
        )
    if text.strip("*") == "":
        raise BlacklistError(f"{pattern!r}: a pattern of only * would block every caller")
    return pattern


class BlacklistConfig(Item):
    """Callers matching `pattern` (``*`` any digits, ``?`` one digit, or ``anonymous``)
    hear `message` and are hung up on; with `extension`, only on calls to it."""

    key_field: ClassVar[str] = "pattern"

    pattern: Annotated[str, AfterValidator(check_pattern)]
    message: PromptField | None = None
    extension: Digits | None = None

    def key(self) -> str:
        """The pattern, and ``@EXTENSION`` for an entry of one extension's calls."""
        return self.pattern if self.extension is None else f"{self.pattern}@{self.extension}"

    @classmethod
    def check_list(cls, items: Sequence[Self], field: str) -> None:
        """Entries are not refused for repeating one another."""


def _digit_forms(number: str, country: str | None) -> set[str]:
    """`number` without separators and `+`, and its E.164 form without `+`."""
    text = _SEPARATORS.sub("", number)
    forms = {text.removeprefix("+")}
    normalised = to_e164(text, country) if country else None
    if normalised is not None:
        forms.add(normalised.removeprefix("+"))
    return forms


@dataclass(frozen=True, slots=True)
class BlacklistEntry:
    pattern: str
    message: Prompt | None = None
    extension: str | None = None


class _Compiled:
    __slots__ = ("anonymous", "entry", "regexes")

    def __init__(self, entry: BlacklistEntry, country: str | None) -> None:
        self.entry = entry
        text = _SEPARATORS.sub("", entry.pattern)
        self.anonymous = text.lower() == ANONYMOUS
        if self.anonymous:
            self.regexes: tuple[re.Pattern[str], ...] = ()
            return
        if "*" in text or "?" in text:
            forms = {text.removeprefix("+")}
        else:
            # An exact number is compared in every form it can be written in.
            forms = _digit_forms(text, country)
        self.regexes = tuple(
            re.compile("".join(_wildcard(c) for c in form)) for form in sorted(forms)
        )

    def matches(self, caller: str, forms: set[str]) -> bool:
        if self.anonymous:
            return caller.strip().lower() in ("", ANONYMOUS)
        return any(regex.fullmatch(form) for regex in self.regexes for form in forms)


def _wildcard(char: str) -> str:
    return {"*": "[0-9]*", "?": "[0-9]"}.get(char, re.escape(char))


class Blacklist:
    def __init__(self, entries: Iterable[BlacklistEntry], country: str | None = None) -> None:
        self.country = country
        self._entries = [_Compiled(check_entry(entry), country) for entry in entries]

    @classmethod
    def from_config(
        cls, entries: Iterable[BlacklistConfig], country: str | None = None
    ) -> Blacklist:
        return cls((BlacklistEntry(e.pattern, e.message, e.extension) for e in entries), country)

    def __len__(self) -> int:
        return len(self._entries)

    def match(self, caller: str, extension: str | None = None) -> BlacklistEntry | None:
        """The entry that blocks `caller` (a number or user part) calling `extension`.

        Entries for that extension are tried before the tenant-wide ones, so a caller
        blocked both ways hears the extension's own message; within each, file order.
        """
        forms = _digit_forms(caller, self.country) if caller else set()
        tenant_wide: BlacklistEntry | None = None
        for compiled in self._entries:
            entry = compiled.entry
            if entry.extension is not None and entry.extension != extension:
                continue
            if not compiled.matches(caller, forms):
                continue
            if entry.extension is not None:
                return entry
            if tenant_wide is None:
                tenant_wide = entry
        return tenant_wide


def check_entry(entry: BlacklistEntry) -> BlacklistEntry:
    check_pattern(entry.pattern)
    return entry
