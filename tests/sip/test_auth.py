"""Digest authentication (RFC 7616) between our own client and server halves, plus a
vector computed by hand from the RFC's formula."""

import hashlib

import pytest

from ipbx.sip import auth
from ipbx.sip.auth import (
    DigestAuthenticator,
    Verdict,
    answer_challenge,
    authorization,
    ha1,
    may_answer,
    parse_auth_params,
)
from ipbx.sip.message import Headers, Response

REALM = "ipbx"


def stored(username: str, password: str):  # type: ignore[no-untyped-def]
    return lambda alg: ha1(username, REALM, password, alg)


@pytest.mark.parametrize("index,algorithm", [(0, "MD5"), (1, "SHA-256")])
def test_client_answer_is_accepted(index: int, algorithm: str) -> None:
    server = DigestAuthenticator(REALM)
    challenge = server.challenges(now=100.0)[index]
    assert f"algorithm={algorithm}" in challenge
    answer = authorization(challenge, "REGISTER", "sip:pbx", "1000", "secret")
    creds = server.credentials([answer])
    assert creds is not None and creds.username == "1000"
    assert server.verify(creds, "REGISTER", stored("1000", "secret"), 101.0) is Verdict.OK


def test_wrong_password_fails_and_unknown_user_looks_the_same() -> None:
    server = DigestAuthenticator(REALM)
    challenge = server.challenges(now=0.0)[0]
    creds = server.credentials([authorization(challenge, "INVITE", "sip:x", "1000", "bad")])
    assert server.verify(creds, "INVITE", stored("1000", "secret"), 1.0) is Verdict.FAILED
    assert server.verify(creds, "INVITE", lambda alg: None, 1.0) is Verdict.FAILED


def test_old_nonce_with_right_password_is_stale() -> None:
    server = DigestAuthenticator(REALM, lifetime=60)
    challenge = server.challenges(now=0.0)[0]
    creds = server.credentials([authorization(challenge, "REGISTER", "sip:x", "1000", "pw")])
    assert server.verify(creds, "REGISTER", stored("1000", "pw"), 61.0) is Verdict.STALE
    assert "stale=true" in server.challenges(now=61.0, stale=True)[0]


def test_replayed_nonce_count_is_refused() -> None:
    server = DigestAuthenticator(REALM)
    challenge = server.challenges(now=0.0)[0]
    creds = server.credentials([authorization(challenge, "REGISTER", "sip:x", "1000", "pw")])
    assert server.verify(creds, "REGISTER", stored("1000", "pw"), 1.0) is Verdict.OK
    assert server.verify(creds, "REGISTER", stored("1000", "pw"), 2.0) is Verdict.STALE


def test_replays_are_refused_while_a_steady_call_rate_keeps_the_counts_bounded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One fresh nonce per call at 250 calls/s: the nonce counts of the last NONCE_SLOTS
    nonces are kept in a ring of that size (a replay within it is refused); a nonce whose
    slot a newer one took is stale, as one past its lifetime is."""
    monkeypatch.setattr(auth, "NONCE_SLOTS", 4096)
    server = DigestAuthenticator(REALM, lifetime=30)
    answers = []
    for n in range(6000):  # 24 s of calls
        now = n / 250
        challenge = server.challenges(now=now)[0]
        creds = server.credentials([authorization(challenge, "INVITE", "sip:x", "1000", "pw")])
        assert server.verify(creds, "INVITE", stored("1000", "pw"), now) is Verdict.OK
        answers.append(creds)
    now = 6000 / 250
    # Replays: the last nonce, one 4,000 nonces back (16 s old, its slot still its own),
    # and the first (its slot retaken by nonce 4,096, though within its lifetime).
    for creds in (answers[-1], answers[-4000], answers[0]):
        assert server.verify(creds, "INVITE", stored("1000", "pw"), now) is Verdict.STALE
    # A nonce answered for the first time: fine until 4,096 newer ones were made.
    for newer, verdict in ((4095, Verdict.OK), (4096, Verdict.STALE)):
        challenge = server.challenges(now=now)[0]
        creds = server.credentials([authorization(challenge, "INVITE", "sip:x", "1000", "pw")])
        for _ in range(newer):
            server.make_nonce(now)
        assert server.verify(creds, "INVITE", stored("1000", "pw"), now) is verdict


def test_forged_nonce_and_unknown_scheme_are_missing_credentials() -> None:
    server = DigestAuthenticator(REALM)
    other = DigestAuthenticator(REALM)
    challenge = other.challenges(now=0.0)[0]
    creds = server.credentials([authorization(challenge, "REGISTER", "sip:x", "1000", "pw")])
    assert server.verify(creds, "REGISTER", stored("1000", "pw"), 1.0) is Verdict.MISSING
    # RFC 4475 §3.3.7: an unknown scheme is no credentials at all, so the answer is 401.
    assert server.credentials(["NoOneKnowsThisScheme opaque-data=here"]) is None


def test_response_matches_the_rfc_formula() -> None:
    challenge = 'Digest realm="ipbx", nonce="abc", qop="auth", algorithm=MD5'
    value = authorization(challenge, "REGISTER", "sip:pbx", "1000", "pw", nc=1, cnonce="xyz")
    _, p = parse_auth_params(value)

    def md5(s: str) -> str:
        return hashlib.md5(s.encode()).hexdigest()

    expected = md5(f"{md5('1000:ipbx:pw')}:abc:00000001:xyz:auth:{md5('REGISTER:sip:pbx')}")
    assert p["response"] == expected


def challenged(status: int, *challenges: str) -> Response:
    response = Response(Headers(), b"", status, "")
    for value in challenges:
        response.headers.add("WWW-Authenticate" if status == 401 else "Proxy-Authenticate", value)
    return response


def test_the_client_answers_the_first_challenge_it_can_compute() -> None:
    """RFC 7616 §3.7: skip the algorithms we do not know, in the server's order."""
    unknown = 'Digest realm="ipbx", nonce="a", algorithm=SHA-512-256'
    sha = 'Digest realm="ipbx", nonce="b", algorithm=SHA-256, qop="auth"'
    header = answer_challenge(challenged(407, unknown, sha), "INVITE", "sip:x", "1000", "pw")
    assert header is not None
    name, value = header
    assert name == "Proxy-Authorization"
    assert 'nonce="b"' in value and "algorithm=SHA-256" in value
    assert answer_challenge(challenged(401, unknown), "INVITE", "sip:x", "1000", "pw") is None


def test_a_challenge_is_answered_once_and_once_more_when_stale() -> None:
    fresh = challenged(401, 'Digest realm="ipbx", nonce="a"')
    again = challenged(401, 'Digest realm="ipbx", nonce="b", stale=TRUE')
    assert may_answer(fresh, 0) and may_answer(again, 0)
    assert not may_answer(fresh, 1)
    assert may_answer(again, 1)
    assert not may_answer(again, 2)
