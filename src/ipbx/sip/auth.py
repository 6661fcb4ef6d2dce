"""HTTP Digest authentication for SIP (RFC 3261 §22, RFC 7616, RFC 8760), sans-I/O.

A nonce is a timestamp and a serial number signed with a per-process secret, so a server
restart merely makes old nonces `stale`. Replays within a nonce's lifetime are refused by
remembering the highest nonce-count seen per nonce (qop=auth), in a ring of fixed size
indexed by the serial number, as OpenSIPS's auth module gives every nonce an index: the
memory is the same at any challenge rate. A nonce whose slot a newer one has taken is
answered `stale`, like one past its lifetime (the phone retries at once, RFC 7616 §3.3).
Only HA1 = H(username:realm:password) is ever needed on the server side.

The client side answers a 401/407 (`answer_challenge`) by sending the request again with
credentials (`retry_with_credentials`), once, and once more when the server says only the
nonce was stale (`may_answer`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import struct
from array import array
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from ipbx.sip.message import Request, Response
from ipbx.sip.uri import split_quoted

ALGORITHMS: dict[str, Callable[[bytes], hashlib._Hash]] = {
    "MD5": hashlib.md5,
    "SHA-256": hashlib.sha256,
}


def digest(algorithm: str, text: str) -> str:
    return ALGORITHMS[algorithm](text.encode("utf-8", "surrogateescape")).hexdigest()


def ha1(username: str, realm: str, password: str, algorithm: str = "MD5") -> str:
    return digest(algorithm, f"{username}:{realm}:{password}")


def parse_auth_params(value: str) -> tuple[str, dict[str, str]]:
    """Split `Digest a="b", c=d` into ("Digest", {"a": "b", "c": "d"}); names lowercased."""
    scheme, _, rest = value.strip().partition(" ")
    params: dict[str, str] = {}
    for item in split_quoted(rest, ","):
        name, eq, raw = item.strip().partition("=")
        if not eq:
            continue
        raw = raw.strip()
        if len(raw) >= 2 and raw[0] == raw[-1] == '"':
            raw = raw[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        params[name.strip().lower()] = raw
    return scheme, params


# Nonce-count slots: 1 MB, a 300 s lifetime's worth of challenges at 870 a second.
NONCE_SLOTS = 1 << 18
_SERIALS = 1 << 32
_NONCE = struct.Struct(">dI")


class Verdict(Enum):
    OK = "ok"
    MISSING = "missing"  # no credentials for this realm: challenge
    STALE = "stale"  # right password, old nonce: challenge with stale=true
    FAILED = "failed"  # wrong credentials: challenge again (and count the failure)


@dataclass(frozen=True, slots=True)
class Credentials:
    username: str
    params: dict[str, str]


class DigestAuthenticator:
    def __init__(
        self,
        realm: str,
        lifetime: float = 300.0,
        algorithms: tuple[str, ...] = ("MD5", "SHA-256"),
        secret: bytes | None = None,
    ) -> None:
        self.realm = realm
        self.lifetime = lifetime
        self.algorithms = algorithms
        self._secret = secret or secrets.token_bytes(32)
        self._opaque = secrets.token_hex(8)
        # The highest nonce-count seen per nonce, at its serial number % NONCE_SLOTS.
        self._counts = array("I", bytes(4 * NONCE_SLOTS))
        self._serial = 0  # the next nonce's

    def _sign(self, stamp: bytes) -> bytes:
        return hmac.new(self._secret, stamp + self.realm.encode(), hashlib.sha256).digest()[:12]

    def make_nonce(self, now: float) -> str:
        serial = self._serial
        self._serial = (serial + 1) % _SERIALS
        self._counts[serial % NONCE_SLOTS] = 0
        stamp = _NONCE.pack(now, serial)
        return base64.urlsafe_b64encode(stamp + self._sign(stamp)).decode().rstrip("=")

    def _nonce_made(self, nonce: str) -> tuple[float, int] | None:
        """When one of our nonces was made, and its serial number; None for a nonce we
        did not sign."""
        try:
            raw = base64.urlsafe_b64decode(nonce + "=" * (-len(nonce) % 4))
        except (ValueError, TypeError):
            return None
        size = _NONCE.size
        if len(raw) != size + 12 or not hmac.compare_digest(raw[size:], self._sign(raw[:size])):
            return None
        made, serial = _NONCE.unpack(raw[:size])
        return float(made), serial

    def challenges(self, now: float, stale: bool = False) -> list[str]:
        """One WWW-/Proxy-Authenticate value per algorithm, in order of preference."""
        nonce = self.make_nonce(now)
        suffix = ", stale=true" if stale else ""
        return [
            f'Digest realm="{self.realm}", nonce="{nonce}", opaque="{self._opaque}", '
            f'algorithm={alg}, qop="auth"{suffix}'
            for alg in self.algorithms
        ]

    def credentials(self, header_values: list[str]) -> Credentials | None:
        """The Digest credentials for our realm among Authorization header values."""
        for value in header_values:
            scheme, params = parse_auth_params(value)
            if scheme.lower() == "digest" and params.get("realm") == self.realm:
                username = params.get("username")
                if username:
                    return Credentials(username, params)
        return None

    def verify(
        self,
        creds: Credentials | None,
        method: str,
        ha1_for: Callable[[str], str | None],
        now: float,
    ) -> Verdict:
        """Check `creds` for a request of `method`. `ha1_for(algorithm)` gives the stored
        HA1 of creds.username, or None for an unknown user (answered like a bad password,
        so that scanners cannot tell existing extensions from missing ones)."""
        if creds is None:
            return Verdict.MISSING
        p = creds.params
        algorithm = p.get("algorithm", "MD5").upper()
        if algorithm == "SHA256":
            algorithm = "SHA-256"
        if algorithm not in self.algorithms:
            return Verdict.MISSING
        nonce = p.get("nonce", "")
        signed = self._nonce_made(nonce)
        if signed is None:
            return Verdict.MISSING
        made, serial = signed
        stored = ha1_for(algorithm)
        if stored is None:
            return Verdict.FAILED
        ha2 = digest(algorithm, f"{method}:{p.get('uri', '')}")
        qop = p.get("qop")
        if qop is not None:
            if qop.lower() != "auth":
                return Verdict.FAILED
            nc = p.get("nc", "")
            expected = digest(algorithm, f"{stored}:{nonce}:{nc}:{p.get('cnonce', '')}:{qop}:{ha2}")
        else:
            nc = ""
            expected = digest(algorithm, f"{stored}:{nonce}:{ha2}")
        if not hmac.compare_digest(expected, p.get("response", "").lower()):
            return Verdict.FAILED
        if not -5 <= now - made <= self.lifetime:
            return Verdict.STALE
        if qop is not None and not self._fresh_count(serial, nc):
            return Verdict.STALE
        return Verdict.OK

    def _fresh_count(self, serial: int, nc: str) -> bool:
        """Whether `nc` is higher than any count seen with nonce `serial` (which still
        owns its slot), remembered if so."""
        if not 0 < (self._serial - serial) % _SERIALS <= NONCE_SLOTS:
            return False
        try:
            count = int(nc, 16)
        except ValueError:
            return False
        slot = serial % NONCE_SLOTS
        if not count > self._counts[slot] or count >= _SERIALS:
            return False
        self._counts[slot] = count
        return True


def authorization(
    challenge: str,
    method: str,
    uri: str,
    username: str,
    password: str,
    nc: int = 1,
    cnonce: str | None = None,
) -> str:
    """The client's answer to one WWW-/Proxy-Authenticate value (RFC 7616 §3.4)."""
    _, p = parse_auth_params(challenge)
    algorithm = p.get("algorithm", "MD5").upper()
    realm, nonce = p.get("realm", ""), p.get("nonce", "")
    key = ha1(username, realm, password, algorithm)
    ha2 = digest(algorithm, f"{method}:{uri}")
    fields = [
        f'username="{username}"',
        f'realm="{realm}"',
        f'nonce="{nonce}"',
        f'uri="{uri}"',
        f"algorithm={algorithm}",
    ]
    qops = [q.strip() for q in p.get("qop", "").split(",") if q.strip()]
    if "auth" in qops:
        cnonce = cnonce or secrets.token_hex(8)
        count = f"{nc:08x}"
        response = digest(algorithm, f"{key}:{nonce}:{count}:{cnonce}:auth:{ha2}")
        fields += ["qop=auth", f"nc={count}", f'cnonce="{cnonce}"']
    else:
        response = digest(algorithm, f"{key}:{nonce}:{ha2}")
    fields.append(f'response="{response}"')
    if "opaque" in p:
        fields.append(f'opaque="{p["opaque"]}"')
    return "Digest " + ", ".join(fields)


# --- the client's side of a challenge -----------------------------------------------------

# Gives the header that answers a 401/407 to a request of (method, uri): ("Authorization"
# or "Proxy-Authorization", value), or None when it has no credentials for it.
CredentialSource = Callable[[Response, str, str], tuple[str, str] | None]


def pick_challenge(values: list[str]) -> str | None:
    """The first Digest challenge whose algorithm we can compute (RFC 7616 §3.7)."""
    for value in values:
        scheme, params = parse_auth_params(value)
        algorithm = params.get("algorithm", "MD5").upper()
        if scheme.lower() == "digest" and algorithm in ALGORITHMS:
            return value
    return None


def is_stale(challenge: str) -> bool:
    return parse_auth_params(challenge)[1].get("stale", "").lower() == "true"


def _challenges(response: Response) -> list[str]:
    header = "WWW-Authenticate" if response.status == 401 else "Proxy-Authenticate"
    return response.headers.get_all(header)


def answer_challenge(
    response: Response, method: str, uri: str, username: str, password: str
) -> tuple[str, str] | None:
    """The header that answers a 401 or 407 to a request of `method` for `uri` (RFC 3261
    §22.2, §22.3); None when no challenge has an algorithm we compute."""
    challenge = pick_challenge(_challenges(response))
    if challenge is None:
        return None
    name = "Authorization" if response.status == 401 else "Proxy-Authorization"
    return name, authorization(challenge, method, uri, username, password)


def may_answer(response: Response, answered: int) -> bool:
    """Whether to answer this 401/407 when `answered` challenges of the same request were
    answered already: the first always; a second only when the server found just the
    nonce stale, since then the credentials were right (RFC 7616 §3.3)."""
    if answered == 0:
        return True
    challenge = pick_challenge(_challenges(response))
    return answered == 1 and challenge is not None and is_stale(challenge)


def retry_with_credentials(
    request: Request, response: Response, answered: int, credentials: CredentialSource
) -> Request | None:
    """`request` again, answering `response` when it is a challenge to answer (`answered`
    challenges of the same request were answered already); None when it is not.

    The retry is a new transaction, so it has no Via and the next CSeq, with the same
    Call-ID and tags (RFC 3261 §8.1.3.5, §22.2)."""
    if response.status not in (401, 407) or not may_answer(response, answered):
        return None
    header = credentials(response, request.method, str(request.uri))
    if header is None:
        return None
    retry = Request(request.headers.copy(), request.body, request.method, request.uri)
    retry.headers.remove("Via")
    retry.headers.set("CSeq", f"{request.cseq.number + 1} {request.method}")
    retry.headers.set(*header)
    return retry
