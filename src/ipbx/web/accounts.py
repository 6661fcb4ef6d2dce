"""The web administration's users: argon2id password hashes, lock-out, sessions.

A password is hashed with argon2id (RFC 9106) at argon2-cffi's defaults, which follow the
RFC's second recommended option (64 MiB, 3 passes): unlike an API token's 192 random
bits, a password a person chose can be guessed, and the slow hash is what makes an
offline guess expensive.

Lock-out: `MAX_FAILURES` wrong passwords in a row lock the user out for
`LOCK_SECONDS`; while locked, even the right password is refused, and the lock's end
clears the count. A right password before that clears it too.

A session is a random 256-bit id in an HttpOnly, SameSite=Strict cookie; the store keeps
only its SHA-256, with the CSRF token the session's forms must send back (a token bound
to the session, compared in constant time). Sessions last `SESSION_SECONDS` from sign-in.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from typing import Literal

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from ipbx.store import AdminSessionRecord, AdminUserRecord, Store

Role = Literal["admin", "supervisor"]
ROLES: tuple[Role, ...] = ("admin", "supervisor")
MAX_FAILURES = 5
LOCK_SECONDS = 15 * 60
SESSION_SECONDS = 8 * 3600
MIN_PASSWORD = 8

_hasher = PasswordHasher()
# Checked against when the name is unknown, so that a wrong name takes as long as a
# wrong password and does not tell which names exist.
_DECOY = _hasher.hash(secrets.token_hex(16))


def create_user(store: Store, name: str, password: str, role: Role, tenant: str) -> bool:
    """Create a user, or set a user's password, role and tenant; True when it is new.
    ValueError for a role that does not exist or a password shorter than MIN_PASSWORD."""
    if role not in ROLES:
        raise ValueError(f"role {role!r}: expected one of {', '.join(ROLES)}")
    if len(password) < MIN_PASSWORD:
        raise ValueError(f"password: at least {MIN_PASSWORD} characters")
    record = AdminUserRecord(
        name=name, tenant=tenant, role=role, password_hash=_hasher.hash(password),
        created=time.time(),
    )  # fmt: skip
    return store.save_admin_user(record)


@dataclass(frozen=True)
class SignIn:
    """A sign-in's outcome: the user when the password was right, else why not."""

    user: AdminUserRecord | None
    locked: bool = False


def sign_in(store: Store, name: str, password: str, now: float | None = None) -> SignIn:
    """Check a name and password, counting wrong passwords towards the lock-out."""
    now = time.time() if now is None else now
    user = store.admin_user(name)
    if user is None:
        _verify(_DECOY, password)
        return SignIn(None)
    if user.locked_until is not None and now < user.locked_until:
        return SignIn(None, locked=True)
    if _verify(user.password_hash, password):
        if user.failures or user.locked_until is not None:
            store.set_admin_user_failures(name, 0, None)
        return SignIn(user)
    failures = (0 if user.locked_until is not None else user.failures) + 1
    locked = failures >= MAX_FAILURES
    store.set_admin_user_failures(name, failures, now + LOCK_SECONDS if locked else None)
    return SignIn(None, locked=locked)


def _verify(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def _digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def open_session(store: Store, user: AdminUserRecord, now: float | None = None) -> str:
    """A new session for a signed-in user: the id for its cookie (kept only hashed)."""
    now = time.time() if now is None else now
    store.delete_admin_sessions(before=now)
    session_id = secrets.token_urlsafe(32)
    store.save_admin_session(user.name, _digest(session_id), secrets.token_urlsafe(32),
                             now + SESSION_SECONDS)  # fmt: skip
    return session_id


def session(store: Store, session_id: str, now: float | None = None) -> AdminSessionRecord | None:
    """The live session with this id; None for an unknown or expired one."""
    return store.admin_session(_digest(session_id), time.time() if now is None else now)


def close_session(store: Store, session_id: str) -> None:
    store.delete_admin_sessions(digest=_digest(session_id))
