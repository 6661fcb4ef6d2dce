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
class SubscriptionRecord:
    """A live SIP event subscription (RFC 6665), as pbx/subscription.py keeps it: the
    package and resource watched, the watcher, the subscription's dialog (RFC 3261
    §12), where its NOTIFYs go, when it expires (epoch seconds) and how many NOTIFYs it
    had (its dialog-info version)."""

    package: str
    resource: str
    watcher: str
    entity: str
    event: str
    call_id: str
    local_tag: str
    remote_tag: str
    local_uri: str
    remote_uri: str
    remote_target: str
    local_seq: int
    remote_seq: int | None
    route_set: tuple[str, ...]
    source: tuple[str, str, int]  # (transport, host, port) the SUBSCRIBE came from
    target: tuple[str, str, int]  # where NOTIFYs go
    behind_nat: bool
    expires_at: float
    version: int


@dataclass(frozen=True, slots=True)
class BindingRecord:
    """One registered Contact of an address of record (RFC 3261 §10.3).

    `transport`, `host` and `port` are where the REGISTER was received from, which is
    where requests for this contact go when the phone sits behind NAT (`behind_nat`) or
    over its connection (RFC 5626 flows).
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
    behind_nat: bool = False


@dataclass(frozen=True, slots=True)
class LegRecord:
    """One leg of a call as the media engine saw it: what ipbx received from that phone.

    `packets_lost` is expected minus received (RFC 3550 A.3); `jitter_ms` the
    interarrival jitter (A.8); `rtt_ms` the round-trip time from RTCP, when the phone
    sent reports; `mos` the E-model estimate (ITU-T G.107), None without media.
    """

    role: str
    peer: str
    codec: str
    packets_received: int
    packets_lost: int
    jitter_ms: float
    rtt_ms: float | None = None
    mos: float | None = None

    @property
    def loss_percent(self) -> float:
        expected = self.packets_received + self.packets_lost
        return 100 * self.packets_lost / expected if expected > 0 else 0.0


@dataclass(frozen=True, slots=True)
class CallRecord:
    """A call detail record. Times are epoch seconds. `answered` is when the caller was
    answered, by a phone or by ipbx's call flow (a menu, voicemail, a group's ringback),
    None when nothing answered: the billed time runs from it. `person_answered` is when
    a person took the call (a phone, an outside number), None when none did. `result`
    says how the call ended: answered (by a person), cancelled, busy, no_answer, failed,
    menu, voicemail, group, announcement, blocked or service (pbx/call/outcome.py).
    `digits` are the DTMF digits ipbx itself received (apps, not relayed calls)."""

    call_id: str
    caller: str
    callee: str
    started: float
    ended: float
    result: str
    answered: float | None = None
    digits: str = ""
    recording: str | None = None
    legs: tuple[LegRecord, ...] = ()
    # The destinations the call went through, comma-separated (extension:1001,
    # voicemail:1001 ...).
    path: str = ""
    # internal (extension to extension), inbound (from a trunk) or outbound (to one).
    direction: str = "internal"
    person_answered: float | None = None
    # Why ipbx itself ended the answered call: media_timeout (its RTP stopped) or
    # session_expired (no session refresh, RFC 4028); None when a party hung up.
    end_reason: str | None = None


@dataclass(frozen=True, slots=True)
class ApiTokenRecord:
    """An API token as stored: never the token itself, only `digest`, the SHA-256 of
    `salt` and its secret part. `key_id` is the token's public part, to find the row."""

    key_id: str
    tenant: str
    scope: str
    salt: str
    digest: str
    created: float
    name: str = ""


@dataclass(frozen=True, slots=True)
class AdminUserRecord:
    """A user of the web administration: `password_hash` is argon2's encoded hash;
    `failures` the wrong passwords in a row, `failed_from` the client addresses they
    came from, `locked_until` the end of a lock-out."""

    name: str
    tenant: str
    role: str
    password_hash: str
    created: float
    failures: int = 0
    locked_until: float | None = None
    failed_from: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class AdminSessionRecord:
    """A signed-in session: whose it is and the CSRF token of its forms."""

    user: AdminUserRecord
    csrf: str
    expires: float


@dataclass(frozen=True, slots=True)
class DeliveryRecord:
    """One event to one webhook, in the outbox. `status` is pending (waiting for
    `next_attempt`), delivered (at `delivered_at`) or failed (gave up after `attempts`).
    `payload` is the exact JSON body POSTed, the same on every attempt."""

    event_id: str
    event_type: str
    webhook: str
    tenant: str
    payload: str
    created: float
    next_attempt: float | None
    attempts: int = 0
    status: str = "pending"
    delivered_at: float | None = None
    last_error: str = ""
    id: int = 0


@dataclass(frozen=True, slots=True)
class ProvisionedRecord:
    """One provisioned configuration item: `kind` is its list in the configuration file
    (trunks, numbers ...), `key` what identifies it there (a name, a number, a URL) and
    `body` its JSON, as the API takes and gives it."""

    tenant: str
    kind: str
    key: str
    body: str
    updated: float = 0.0


@dataclass(frozen=True, slots=True)
class TenantRecord:
    """A tenant: `id` is what tokens, records and items name it by."""

    id: str
    name: str


@dataclass(frozen=True, slots=True)
class QueueLogRecord:
    """One row of a call queue's log (pbx/queue/log.py): `data` is the event's fields
    joined with "|", as Asterisk's queue_log file writes them."""

    time: float
    call_id: str
    queue: str
    agent: str
    event: str
    data: str


@dataclass(frozen=True, slots=True)
class MessageRecord:
    """One text message (pbx/messaging.py). `direction`: internal (extension to
    extension), inbound (from a trunk) or outbound (to a trunk); `status`: pending,
    delivered or failed, since `status_time`. `id` is 0 until the store assigns one."""

    time: float
    direction: str
    sender: str
    recipient: str
    content_type: str
    body: str
    status: str
    status_time: float
    call_id: str
    cseq: int
    from_tag: str
    trunk: str | None = None
    id: int = 0
