"""Dial patterns, outbound routes, E.164 normalisation and the numbers (DIDs) table.

Patterns are Asterisk's (`_9NXXNXXXXXX`), because that is what operators already write:
after a leading ``_``, ``X`` is any digit, ``Z`` 1-9, ``N`` 2-9, ``[15-7]`` a set,
``.`` one or more further characters and ``!`` zero or more; ``-`` is ignored for
readability. Without the ``_`` a pattern is a literal number (``911``). ``re:`` takes a
Python regular expression instead, matched against the whole number. Every pattern
compiles to one anchored regular expression.

An outbound route turns what an extension dialled into what a trunk is sent: strip N
leading characters, prepend a prefix, then normalise to E.164 by the configured country
(its national trunk prefix and international access prefix, ITU-T E.164 / E.123).
Routes are tried in order and the first whose pattern matches is taken; a caller whose
permission is below the route's is refused, except for the country's emergency numbers,
which are always allowed (Kari's Law in the US, the EU's 112 rules).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Annotated, ClassVar, Literal

from pydantic import AfterValidator, Field, field_validator

from ipbx.pbx.destination import Destination
from ipbx.pbx.events import DEFAULT_TENANT
from ipbx.pbx.schema import DestinationField, Item, Name, Where

Permission = Literal["internal", "national", "international", "emergency"]

# Who may use what: a route needs at least its level; `emergency` routes are for all.
_RANK: dict[str, int] = {"emergency": -1, "internal": 0, "national": 1, "international": 2}

DIAL_CHARS = "0123456789*#+"
_ANY = "[0-9*#+]"
_CLASSES = {"X": "0-9", "Z": "1-9", "N": "2-9"}
E164 = re.compile(r"\+[1-9][0-9]{1,14}")
_SEPARATORS = re.compile(r"[\s().-]")


class PatternError(ValueError):
    """A dial pattern that does not compile; the message points at the problem."""


def compile_pattern(pattern: str) -> re.Pattern[str]:
    """The anchored regular expression a dial pattern stands for (see the module doc)."""
    if pattern.startswith("re:"):
        try:
            return re.compile(rf"(?:{pattern[3:]})\Z")
        except re.error as exc:
            raise PatternError(f"{pattern!r}: {exc}") from None
    if not pattern.startswith("_"):
        literal = pattern.replace("-", "")
        if not literal or any(c not in DIAL_CHARS for c in literal):
            raise PatternError(
                f"{pattern!r}: a literal number uses only 0-9 * # + (a pattern starts with _)"
            )
        return re.compile(re.escape(literal) + r"\Z")
    parts: list[str] = []
    text = pattern[1:]
    i = 0
    while i < len(text):
        c = text[i]
        upper = c.upper()
        if upper in _CLASSES:
            parts.append(f"[{_CLASSES[upper]}]")
        elif c == ".":
            parts.append(_ANY + "+")
        elif c == "!":
            parts.append(_ANY + "*")
        elif c == "[":
            end = text.find("]", i + 1)
            if end < 0:
                raise PatternError(f"{pattern!r}: '[' without ']'")
            parts.append(_set(text[i + 1 : end], pattern))
            i = end
        elif c == "-":
            pass
        elif c in DIAL_CHARS:
            parts.append(re.escape(c))
        else:
            raise PatternError(f"{pattern!r}: unexpected {c!r}")
        i += 1
    if not parts:
        raise PatternError(f"{pattern!r}: empty pattern")
    return re.compile("".join(parts) + r"\Z")


def _set(body: str, pattern: str) -> str:
    """`1-5`, `137-9`, `*#`: a character class of dial characters."""
    if not body:
        raise PatternError(f"{pattern!r}: empty set []")
    chars: list[str] = []
    i = 0
    while i < len(body):
        c = body[i]
        if c not in DIAL_CHARS:
            raise PatternError(f"{pattern!r}: unexpected {c!r} in a set")
        if i + 2 < len(body) and body[i + 1] == "-":
            last = body[i + 2]
            if not (c.isdigit() and last.isdigit() and c <= last):
                raise PatternError(f"{pattern!r}: bad range {c}-{last}")
            chars.append(f"{c}-{last}")
            i += 3
        else:
            chars.append(re.escape(c))
            i += 1
    return "[" + "".join(chars) + "]"


# --- countries ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Country:
    """What dialling looks like in one country (ITU-T E.164 assignments, national plans).

    `national_lengths` are the lengths of a national significant number where the plan
    is closed; a bare number of such a length gets the country code. Open plans (DE)
    leave it empty: only numbers written with the trunk prefix are completed.
    """

    iso: str
    calling_code: str
    trunk_prefix: str
    international_prefix: str
    emergency: frozenset[str]
    national_lengths: tuple[int, ...] = ()


def _country(
    iso: str, cc: str, trunk: str, intl: str, emergency: str, lengths: tuple[int, ...]
) -> Country:
    # 112 is answered on every GSM network whatever the country, so it is always included.
    return Country(iso, cc, trunk, intl, frozenset({"112", *emergency.split()}), lengths)


COUNTRIES: dict[str, Country] = {
    c.iso: c
    for c in (
        _country("US", "1", "1", "011", "911", (10,)),
        _country("CA", "1", "1", "011", "911", (10,)),
        _country("GB", "44", "0", "00", "999", (9, 10)),
        _country("UA", "380", "0", "00", "101 102 103 104", (9,)),
        _country("DE", "49", "0", "00", "110", ()),
        _country("RU", "7", "8", "810", "101 102 103 104", (10,)),
        _country("FR", "33", "0", "00", "15 17 18 114", (9,)),
    )
}
COUNTRIES["UK"] = COUNTRIES["GB"]

# With no country configured, the numbers every handset knows.
DEFAULT_EMERGENCY = frozenset({"112", "911", "999"})


def emergency_numbers(country: str | None) -> frozenset[str]:
    return DEFAULT_EMERGENCY if country is None else COUNTRIES[country].emergency


def to_e164(number: str, country: str | None) -> str | None:
    """`number` in E.164 (`+` and digits), or None when it cannot be told.

    ``+...`` is kept; the international access prefix (00, 011, 810) becomes ``+``; the
    national trunk prefix (0, 1, 8) becomes the country code; a bare number of national
    length gets the country code.
    """
    text = _SEPARATORS.sub("", number)
    if text.startswith("+"):
        return text if E164.fullmatch(text) else None
    if not text.isdigit() or country is None:
        return None
    plan = COUNTRIES[country]
    if text.startswith(plan.international_prefix):
        candidate = "+" + text[len(plan.international_prefix) :]
    elif text.startswith(plan.trunk_prefix) and (
        not plan.national_lengths or len(text) - len(plan.trunk_prefix) in plan.national_lengths
    ):
        candidate = "+" + plan.calling_code + text[len(plan.trunk_prefix) :]
    elif len(text) in plan.national_lengths:
        candidate = "+" + plan.calling_code + text
    else:
        return None
    return candidate if E164.fullmatch(candidate) else None


# --- outbound routes ----------------------------------------------------------------------


def _pattern(value: str) -> str:
    compile_pattern(value)
    return value


class OutboundRouteConfig(Item):
    """Dialled numbers matching `pattern` leave through `trunks`, first available first."""

    name: Name
    pattern: Annotated[str, AfterValidator(_pattern)]
    strip: int = Field(default=0, ge=0)
    prepend: Annotated[str, Field(pattern=r"^\+?[0-9*#]*$")] = ""
    trunks: list[Name] = Field(min_length=1)
    caller_id: str | None = None
    permission: Permission = "national"


@dataclass(frozen=True, slots=True)
class OutboundCall:
    """What the call router needs to place a dialled number through a trunk."""

    route: str
    dialled: str
    number: str  # for the trunk's Request-URI: E.164, or the emergency number as dialled
    trunks: tuple[str, ...]  # in failover order
    caller_id: str | None
    emergency: bool


class Forbidden(Exception):
    """The caller's permission is below the route's (answered 403)."""

    def __init__(self, route: str, needed: str, caller: str) -> None:
        super().__init__(f"route {route} needs permission {needed}; the caller has {caller}")
        self.route = route


@dataclass(frozen=True, slots=True)
class Route:
    name: str
    pattern: re.Pattern[str]
    strip: int
    prepend: str
    trunks: tuple[str, ...]
    caller_id: str | None
    permission: Permission


class Dialplan:
    """The outbound routes in order, and the country numbers are normalised for."""

    def __init__(self, routes: Sequence[Route], country: str | None = None) -> None:
        self.routes = tuple(routes)
        self.country = country
        self.emergency = emergency_numbers(country)

    @classmethod
    def from_config(cls, routes: Iterable[OutboundRouteConfig], country: str | None) -> Dialplan:
        return cls(
            [
                Route(
                    r.name,
                    compile_pattern(r.pattern),
                    r.strip,
                    r.prepend,
                    tuple(r.trunks),
                    r.caller_id,
                    r.permission,
                )
                for r in routes
            ],
            country,
        )

    def route(self, dialled: str, permission: Permission = "international") -> OutboundCall | None:
        """The first route matching `dialled`, transformed; None when none matches.

        Raises Forbidden when the caller's permission is below the route's, unless the
        number is an emergency number.
        """
        for route in self.routes:
            if route.pattern.fullmatch(dialled) is None:
                continue
            number = route.prepend + dialled[route.strip :]
            emergency = number in self.emergency or dialled in self.emergency
            if not emergency and _RANK[permission] < _RANK[route.permission]:
                raise Forbidden(route.name, route.permission, permission)
            if not emergency:
                number = to_e164(number, self.country) or number
            return OutboundCall(
                route.name, dialled, number, route.trunks, route.caller_id, emergency
            )
        return None


# --- numbers (DIDs) -----------------------------------------------------------------------


class NumberConfig(Item):
    """A number (DID) of a tenant, in E.164, and where its calls go."""

    key_field: ClassVar[str] = "number"

    number: str
    destination: DestinationField
    tenant: Name = DEFAULT_TENANT

    @field_validator("number")
    @classmethod
    def _check_number(cls, value: str) -> str:
        if not (E164.fullmatch(value) or re.fullmatch(r"[0-9]{1,15}", value)):
            raise ValueError(f"{value!r}: expected E.164 (+ and up to 15 digits) or short digits")
        return value

    @field_validator("tenant")
    @classmethod
    def _only_the_default_tenant(cls, value: str) -> str:
        # Calls are routed in the default tenant only; a number written for another
        # would silently ring the default tenant's extensions.
        if value != DEFAULT_TENANT:
            raise ValueError(
                f"{value!r}: numbers route to the {DEFAULT_TENANT!r} tenant only "
                "(routing by tenant is not built yet); remove `tenant`"
            )
        return value

    def destinations(self) -> Iterator[tuple[Where, Destination]]:
        yield ("destination",), self.destination


@dataclass(frozen=True, slots=True)
class Number:
    number: str
    destination: Destination
    tenant: str


class Numbers:
    """The tenant's numbers by E.164. Providers write the called number differently
    (``+15550100``, ``15550100``, ``0442...``), so a lookup tries it as given, with a
    ``+``, and normalised by the country."""

    def __init__(self, numbers: Iterable[Number], country: str | None = None) -> None:
        self._by_number = {n.number: n for n in numbers}
        self.country = country

    @classmethod
    def from_config(cls, numbers: Iterable[NumberConfig], country: str | None) -> Numbers:
        return cls((Number(n.number, n.destination, n.tenant) for n in numbers), country)

    def __len__(self) -> int:
        return len(self._by_number)

    def lookup(self, *candidates: str | None) -> Number | None:
        """The first candidate (Request-URI user, then To user) that is one of ours."""
        for candidate in candidates:
            if not candidate:
                continue
            text = _SEPARATORS.sub("", candidate)
            forms = [text]
            if text.isdigit():
                forms.append("+" + text)
            normalised = to_e164(text, self.country)
            if normalised is not None:
                forms.append(normalised)
            for form in forms:
                found = self._by_number.get(form)
                if found is not None:
                    return found
        return None
