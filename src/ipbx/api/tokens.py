"""API tokens: ``ipbx_<key id>_<secret>``, given out once, stored as a salted hash.

The key id (public, 12 hex digits) finds the row; the secret (192 random bits) is
checked against SHA-256(salt + secret) in constant time. A slow password hash (scrypt,
argon2) protects low-entropy passwords against guessing; a 192-bit random secret cannot
be guessed, so a fast hash loses nothing and keeps every request cheap (GitHub's and
Stripe's tokens are checked the same way). Scopes: ``read`` may use every GET,
``admin`` everything.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from typing import Literal

from ipbx.store import ApiTokenRecord, Store

Scope = Literal["read", "admin"]
SCOPES: tuple[Scope, ...] = ("read", "admin")
PREFIX = "ipbx"
_TOKEN = re.compile(rf"^{PREFIX}_([0-9a-f]{{12}})_([0-9a-f]{{48}})$")


def _digest(salt: str, secret: str) -> str:
    return hashlib.sha256(bytes.fromhex(salt) + secret.encode()).hexdigest()


def create_token(
    store: Store, scope: Scope, tenant: str = "default", name: str = ""
) -> tuple[str, ApiTokenRecord]:
    """A new token: the text to hand out (shown once, never stored) and its record."""
    if scope not in SCOPES:
        raise ValueError(f"scope {scope!r}: expected one of {', '.join(SCOPES)}")
    key_id = secrets.token_hex(6)
    secret = secrets.token_hex(24)
    salt = secrets.token_hex(16)
    record = ApiTokenRecord(
        key_id=key_id,
        tenant=tenant,
        scope=scope,
        salt=salt,
        digest=_digest(salt, secret),
        created=time.time(),
        name=name,
    )
    store.save_api_token(record)
    return f"{PREFIX}_{key_id}_{secret}", record


def verify_token(store: Store, token: str) -> ApiTokenRecord | None:
    """The record of a valid token, None for anything else (malformed, unknown, wrong)."""
    match = _TOKEN.match(token.strip())
    if match is None:
        return None
    record = store.api_token(match[1])
    if record is None:
        return None
    if not hmac.compare_digest(_digest(record.salt, match[2]), record.digest):
        return None
    return record


def allows(granted: str, needed: Scope) -> bool:
    return granted == "admin" or granted == needed
