"""The blacklist: a caller matching a pattern, for the whole tenant or for one extension,
is found whatever way the provider wrote the number."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ipbx.pbx.blacklist import (
    Blacklist,
    BlacklistConfig,
    BlacklistEntry,
    BlacklistError,
    check_pattern,
)
from ipbx.pbx.prompt import Prompt


def blacklist(*entries: dict[str, str], country: str | None = None) -> Blacklist:
    return Blacklist.from_config([BlacklistConfig.model_validate(e) for e in entries], country)


def test_the_issue_pattern_blocks_a_range_however_the_number_is_written() -> None:
    blocked = blacklist(
        {"pattern": "+1555666*", "message": "Your calls to this company are blocked."}
    )
    entry = blocked.match("+15556661234", None)
    assert entry is not None
    assert entry.message == Prompt(text="Your calls to this company are blocked.")
    assert blocked.match("15556661234", "1001") == entry  # no +, and to any extension
    assert blocked.match("+1 (555) 666-1234", None) == entry
    assert blocked.match("+1555666", None) == entry  # * is also no digits
    assert blocked.match("+15556671234", None) is None
    assert blocked.match("+25556661234", None) is None
    assert blocked.match("anonymous", None) is None
    assert blocked.match("", None) is None


def test_exact_numbers_and_single_digit_wildcards() -> None:
    blocked = blacklist({"pattern": "+15550100"}, {"pattern": "+7495???????"})
    assert blocked.match("+15550100") is not None
    assert blocked.match("+155501000") is None
    assert blocked.match("+1555010") is None
    assert blocked.match("+74951234567") is not None
    assert blocked.match("+7495123456") is None  # one digit short
    assert blocked.match("+749512345678") is None


def test_wildcards_anywhere() -> None:
    blocked = blacklist({"pattern": "*666*"}, {"pattern": "+1?00*"})
    assert blocked.match("+15556661234") is not None
    assert blocked.match("0666") is not None
    assert blocked.match("+12001") is not None
    assert blocked.match("+1200") is not None
    assert blocked.match("+1210") is None


def test_national_and_international_forms_match_with_a_country() -> None:
    # Ukraine: trunk prefix 0, nine national digits, calling code 380.
    blocked = blacklist({"pattern": "+380441234567"}, {"pattern": "0501112233"}, country="UA")
    assert blocked.match("0441234567") is not None  # national form of the pattern
    assert blocked.match("380441234567") is not None
    assert blocked.match("+380501112233") is not None  # E.164 form of a national pattern
    assert blocked.match("0501112234") is None
    # Without a country nothing can be told from a national number.
    assert blacklist({"pattern": "+380441234567"}).match("0441234567") is None


def test_anonymous_callers() -> None:
    blocked = blacklist({"pattern": "anonymous", "message": "Please show your number."})
    assert blocked.match("anonymous") is not None
    assert blocked.match("Anonymous") is not None
    assert blocked.match("") is not None
    assert blocked.match("+15550100") is None


def test_per_extension_entries_apply_to_their_extension_only_and_win() -> None:
    blocked = blacklist(
        {"pattern": "+1555*", "message": "Blocked for everyone."},
        {"pattern": "+1555666*", "message": "Bob does not take your calls.", "extension": "1001"},
        {"pattern": "+1999*", "extension": "1001"},
    )
    for_bob = blocked.match("+15556661234", "1001")
    assert for_bob is not None and for_bob.extension == "1001"
    assert for_bob.message == Prompt(text="Bob does not take your calls.")
    for_alice = blocked.match("+15556661234", "1000")
    assert for_alice is not None and for_alice.extension is None
    assert blocked.match("+19991234", "1001") is not None
    assert blocked.match("+19991234", "1000") is None
    assert blocked.match("+19991234", None) is None
    assert len(blocked) == 3


def test_bad_patterns() -> None:
    for pattern in ("", "*", "**", "+", "+1555abc", "1555-66x", "sip:1000@host"):
        with pytest.raises(BlacklistError):
            check_pattern(pattern)
    with pytest.raises(BlacklistError):
        Blacklist([BlacklistEntry("nonsense")])


numbers = st.text("0123456789", min_size=1, max_size=15)


@given(number=numbers, plus=st.booleans(), caller_plus=st.booleans())
def test_an_exact_number_matches_itself_with_or_without_plus(
    number: str, plus: bool, caller_plus: bool
) -> None:
    blocked = blacklist({"pattern": ("+" if plus else "") + number})
    assert blocked.match(("+" if caller_plus else "") + number) is not None


@given(pattern=st.text("0123456789*?", min_size=1, max_size=12), caller=numbers)
def test_wildcards_mean_what_a_regular_expression_says(pattern: str, caller: str) -> None:
    if not pattern.strip("*"):
        return
    expected = re.fullmatch(pattern.replace("?", "[0-9]").replace("*", "[0-9]*"), caller)
    assert (blacklist({"pattern": pattern}).match(caller) is not None) == (expected is not None)
