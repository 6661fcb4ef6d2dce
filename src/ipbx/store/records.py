"""The values the store hands out: plain dataclasses, never ORM rows."""

from dataclasses import dataclass

DEFAULT_TENANT = "default"


@dataclass(frozen=True, slots=True)
class ExtensionRecord:
    """A provisioned extension; only digest HA1 hashes are kept (RFC 7616 §3.4.2)."""

    number: str
    name: str
    ha1_md5: str
    ha1_sha256: str


@dataclass(frozen=True, slots=True)
class BindingRecord:
    """One registered Contact of an address of record (RFC 3261 §10.3).

    `transport`, `host` and `port` are where the REGISTER was received from, which is
    where requests for this contact go when the phone sits behind NAT (RFC 5626 flows).
    """

    aor: str
    contact_uri: str
    expires_at: float
    call_id: str
    cseq: int
    transport: str
    host: str
    port: int
    instance_id: str | None = None
    user_agent: str = ""
    q: float = 1.0
