"""The web administration's users: argon2id password hashes, lock-out, sessions.

A password is hashed with argon2id (RFC 9106) at argon2-cffi's defaults, which follow the
RFC's second recommended option (64 MiB, 3 passes): unlike an API token's 192 random
bits, a password a person chose can be guessed, and the slow hash is what makes an
offline guess expensive.

Guessing is limited two ways, each for `LOCK_SECONDS`:
- A user: `MAX_FAILURES` wrong passwords in a row lock the user out, from the client
  addresses those wrong passwords came from. There even the right password is refused;
  from an address that has not failed, the user still signs in, so that whoever knows a
  user's name cannot lock that user out from the office (django-axes does the same with
  its lock-out parameters `[["username", "ip_address"]]`). A wrong password from a new
  address during the lock locks that address too; once `MAX_ADDRESSES` addresses have
  failed (a guess spread over many machines), the lock holds from everywhere. The lock's
  end clears the count; a right password clears it before a lock, and leaves a lock
  (which holds elsewhere) to its end.
- A client address (`address_limit`): `ADDRESS_FAILURES` refused sign-ins within
  `ADDRESS_WINDOW`, whatever the names, and every sign-in from it is refused without
  looking at the password, as fail2ban bans the source of failed logins and 3CX blocks
  the address of repeated failed logins to its console. A right password does not
  clear the count (one's own account would otherwise reset it between guesses). The
  address is the client's as uvicorn gives it: the connection's peer, or for a peer it
  trusts as a proxy (127.0.0.1 unless FORWARDED_ALLOW_IPS says otherwise), the client
  address its X-Forwarded-For names. Behind another proxy every client has the proxy's
  address, and the limit is the proxy's whole.

A session is a random 256-bit id in an HttpOnly, SameSite=Strict cookie; the store keeps
only its SHA-256, with the CSRF token the session's forms must send back (a token bound
to the session, compared in constant time). Sessions last `SESSION_SECONDS` from sign-in.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass, replace
from typing import Literal

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from ipbx.pbx.guard import Guard
from ipbx.store import AdminSessionRecord, AdminUserRecord, Store

Role = Literal["admin", "supervisor"]
ROLES: tuple[Role, ...] = ("admin", "supervisor")
MAX_FAILURES = 5
LOCK_SECONDS = 15 * 60
# Addresses a user's lock names one by one; past this many, it holds from every address.
MAX_ADDRESSES = 16
ADDRESS_FAILURES = 20
ADDRESS_WINDOW = 15 * 60
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


def sign_in(
    store: Store, name: str, password: str, address: str, now: float | None = None
) -> SignIn:
    """Check a name and password sent from client `address`, counting wrong passwords
    towards the user's lock-out."""
    now = time.time() if now is None else now
    user = store.admin_user(name)
    if user is None:
        _verify(_DECOY, password)
        return SignIn(None)
    locked = user.locked_until is not None and now < user.locked_until
    if locked and (address in user.failed_from or len(user.failed_from) >= MAX_ADDRESSES):
        return SignIn(None, locked=True)
    if _verify(user.password_hash, password):
        # A lock that holds elsewhere is kept until its end.
        if not locked and (user.failures or user.locked_until is not None):
            store.set_admin_user_failures(name, 0, None)
        return SignIn(user)
    if user.locked_until is not None and not locked:  # an old lock, ended
        user = replace(user, failures=0, failed_from=frozenset())
    failed_from = user.failed_from
    if len(failed_from) < MAX_ADDRESSES:
        failed_from |= {address}
    failures = user.failures + 1
    lock = failures >= MAX_FAILURES
    until = (user.locked_until if locked else None) or (now + LOCK_SECONDS if lock else None)
    store.set_admin_user_failures(name, failures, until, failed_from)
    return SignIn(None, locked=lock)


def address_limit() -> Guard:
    """Refused sign-ins counted by client address, refused at the limit (see the
    module docstring)."""
    return Guard(ADDRESS_FAILURES, ADDRESS_WINDOW, LOCK_SECONDS)


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
