"""Dial patterns (Asterisk syntax), outbound routes, E.164 by country, numbers (DIDs)."""

from __future__ import annotations

from functools import cache

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ipbx.pbx.destination import Destination, Kind
from ipbx.pbx.dialplan import (
    DIAL_CHARS,
    Dialplan,
    Forbidden,
    Number,
    Numbers,
    PatternError,
    Route,
    compile_pattern,
    to_e164,
)

# --- the pattern language, as a token list that both the generator and an independent
# reference matcher read -----------------------------------------------------------------

DIGITS = "0123456789"
CLASSES = {"X": DIGITS, "Z": DIGITS[1:], "N": DIGITS[2:]}
Token = tuple[str, str]  # (pattern text, the characters one position accepts) or wildcards

literal = st.sampled_from(DIAL_CHARS).map(lambda c: (c, c))
klass = st.sampled_from("XZNxzn").map(lambda c: (c, CLASSES[c.upper()]))
digit_set = st.lists(st.sampled_from(DIGITS + "*#"), min_size=1, max_size=4).map(
    lambda cs: ("[" + "".join(cs) + "]", "".join(cs))
)
digit_range = st.tuples(st.sampled_from(DIGITS), st.sampled_from(DIGITS)).map(
    lambda ab: (f"[{min(ab)}-{max(ab)}]", DIGITS[int(min(ab)) : int(max(ab)) + 1])
)
wildcard = st.sampled_from([(".", "+"), ("!", "*")])
tokens_st = st.lists(
    st.one_of(literal, klass, digit_set, digit_range), min_size=1, max_size=8
).flatmap(lambda body: st.one_of(st.just(body), wildcard.map(lambda w: [*body, w])))


def pattern_text(tokens: list[Token]) -> str:
    return "_" + "".join(text for text, _ in tokens)


def reference_match(tokens: list[Token], number: str) -> bool:
    """Backtracking over the tokens: the meaning of the syntax, written independently of
    the regex compiler."""

    @cache
    def at(t: int, i: int) -> bool:
        if t == len(tokens):
            return i == len(number)
        text, accepts = tokens[t]
        if text in (".", "!"):
            least = 1 if text == "." else 0
            return any(
                all(c in DIAL_CHARS for c in number[i:j]) and at(t + 1, j)
                for j in range(i + least, len(number) + 1)
            )
        return i < len(number) and number[i] in accepts and at(t + 1, i + 1)

    return at(0, 0)


@st.composite
def pattern_and_match(draw: st.DrawFn) -> tuple[list[Token], str]:
    tokens = draw(tokens_st)
    out = []
    for text, accepts in tokens:
        if text == ".":
            out.append(draw(st.text(DIAL_CHARS, min_size=1, max_size=5)))
        elif text == "!":
            out.append(draw(st.text(DIAL_CHARS, max_size=5)))
        else:
            out.append(draw(st.sampled_from(accepts)))
    return tokens, "".join(out)


@given(pattern_and_match())
def test_a_pattern_matches_every_number_generated_from_it(case: tuple[list[Token], str]) -> None:
    tokens, number = case
    assert compile_pattern(pattern_text(tokens)).fullmatch(number)


@given(tokens_st, st.text(DIAL_CHARS + "a", max_size=14))
def test_a_pattern_matches_exactly_what_the_syntax_means(tokens: list[Token], number: str) -> None:
    compiled = compile_pattern(pattern_text(tokens))
    assert bool(compiled.fullmatch(number)) == reference_match(tokens, number)


@pytest.mark.parametrize(
    ("pattern", "matches", "misses"),
    [
        ("_9NXXNXXXXXX", ["92125551234"], ["91125551234", "9212555123", "921255512345"]),
        ("_1[2-5]X", ["120", "159"], ["110", "160"]),
        ("_00.", ["0044"], ["00"]),
        ("_00!", ["00", "0044"], ["0"]),
        ("_555-XXXX", ["5551234"], ["555-1234"]),
        ("911", ["911"], ["9111", "91"]),
        ("re:(00|\\+)[1-9]\\d{6,14}", ["+4420794600", "004420794600"], ["+0123456"]),
    ],
)
def test_patterns_as_operators_write_them(
    pattern: str, matches: list[str], misses: list[str]
) -> None:
    compiled = compile_pattern(pattern)
    assert all(compiled.fullmatch(n) for n in matches)
    assert not any(compiled.fullmatch(n) for n in misses)


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("_9[5-", "'\\[' without '\\]'"),
        ("_9[]", "empty set"),
        ("_9[5-1]", "bad range 5-1"),
        ("_9Q", "unexpected 'Q'"),
        ("_", "empty pattern"),
        ("91a", "literal number"),
        ("re:(", "missing \\)"),
    ],
)
def test_bad_patterns_are_refused(pattern: str, message: str) -> None:
    with pytest.raises(PatternError, match=message):
        compile_pattern(pattern)


# --- E.164 by country -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("number", "country", "e164"),
    [
        ("+15551234567", None, "+15551234567"),
        ("2125551234", "US", "+12125551234"),
        ("12125551234", "US", "+12125551234"),
        ("011442079460000", "US", "+442079460000"),
        ("020 7946 0000", "GB", "+442079460000"),
        ("00380441234567", "GB", "+380441234567"),
        ("0441234567", "UA", "+380441234567"),
        ("030123456", "DE", "+4930123456"),
        ("84951234567", "RU", "+74951234567"),
        ("810380441234567", "RU", "+380441234567"),
        ("411", "US", None),
        ("2125551234", None, None),
        ("+0123", "US", None),
    ],
)
def test_numbers_normalise_to_e164_by_country(
    number: str, country: str | None, e164: str | None
) -> None:
    assert to_e164(number, country) == e164


# --- outbound routes --------------------------------------------------------------------


def route(name: str, pattern: str, **kw: object) -> Route:
    fields: dict[str, object] = {
        "strip": 0,
        "prepend": "",
        "trunks": ("provider1", "provider2"),
        "caller_id": None,
        "permission": "national",
    }
    fields.update(kw)
    return Route(name, compile_pattern(pattern), **fields)  # type: ignore[arg-type]


def test_the_issue_route_strips_the_nine_and_prepends_plus_one() -> None:
    plan = Dialplan(
        [route("national", "_9NXXNXXXXXX", strip=1, prepend="+1", caller_id="+15550100")]
    )
    call = plan.route("92125551234", "national")
    assert call is not None
    assert (call.route, call.number, call.trunks, call.caller_id, call.emergency) == (
        "national",
        "+12125551234",
        ("provider1", "provider2"),
        "+15550100",
        False,
    )
    assert plan.route("1001", "national") is None


def test_numbers_are_normalised_by_the_country_after_strip() -> None:
    plan = Dialplan([route("uk", "_90[1-9]X.", strip=1)], country="GB")
    call = plan.route("902079460000")
    assert call is not None and call.number == "+442079460000"


def test_permissions_rank_internal_national_international() -> None:
    plan = Dialplan(
        [
            route("intl", "_9011.", strip=1, permission="international"),
            route("national", "_9NXXNXXXXXX", strip=1),
            route("internal", "_8XXX", permission="internal"),
        ],
        country="US",
    )
    with pytest.raises(Forbidden, match="route intl needs permission international"):
        plan.route("9011442079460000", "national")
    assert plan.route("9011442079460000", "international") is not None
    with pytest.raises(Forbidden):
        plan.route("92125551234", "internal")
    assert plan.route("8123", "internal") is not None


@pytest.mark.parametrize(("country", "number"), [("US", "911"), ("GB", "999"), ("UA", "112")])
def test_emergency_numbers_are_always_allowed_and_sent_as_dialled(
    country: str, number: str
) -> None:
    plan = Dialplan([route("emergency", number, permission="international")], country=country)
    call = plan.route(number, "internal")
    assert call is not None and call.emergency and call.number == number


def test_an_outside_line_prefix_in_front_of_an_emergency_number_still_works() -> None:
    plan = Dialplan([route("all", "_9.", strip=1, permission="international")], country="US")
    call = plan.route("9911", "internal")
    assert call is not None and (call.number, call.emergency) == ("911", True)


# --- numbers (DIDs) ---------------------------------------------------------------------


def test_a_did_is_found_however_the_provider_writes_it() -> None:
    sales = Number("+15550100", Destination(Kind.EXTENSION, "1001"), "default")
    numbers = Numbers([sales], country="US")
    assert numbers.lookup("+15550100") is sales
    assert numbers.lookup("15550100") is sales
    assert numbers.lookup(None, "+1 555-0100") is sales
    assert numbers.lookup("5550199", "") is None
    uk = Numbers([Number("+442079460000", Destination(Kind.QUEUE, "support"), "t")], "GB")
    assert uk.lookup("02079460000") is not None
