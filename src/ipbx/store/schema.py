"""Table definitions: the current shape of the database, as SQLAlchemy Core tables.

The migrations in `migrations/versions/` are the history that produces this shape;
`tests/store` checks that the two agree.
"""

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
)

# Named constraints so that later migrations can drop or alter them by name, on SQLite
# (batch mode) as on PostgreSQL.
metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

tenants = Table(
    "tenants",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("domain", String(255), nullable=False, unique=True),
    Column("name", String(255), nullable=False),
)

extensions = Table(
    "extensions",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("tenant_id", Integer, ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
    Column("number", String(32), nullable=False),
    Column("name", String(255), nullable=False),
    Column("ha1_md5", String(32), nullable=False),
    Column("ha1_sha256", String(64), nullable=False),
    Column("created", DateTime(timezone=True), nullable=False),
    Column("updated", DateTime(timezone=True), nullable=False),
    UniqueConstraint("tenant_id", "number"),
)

registrations = Table(
    "registrations",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("tenant_id", Integer, ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
    Column("aor", String(32), nullable=False),
    Column("contact_uri", Text, nullable=False),
    # Start-up deletes expired bindings by this column.
    Column("expires_at", Float, nullable=False, index=True),
    Column("call_id", Text, nullable=False),
    Column("cseq", Integer, nullable=False),
    Column("received_transport", String(8), nullable=False),
    Column("received_host", String(255), nullable=False),
    Column("received_port", Integer, nullable=False),
    Column("instance_id", Text, nullable=True),
    Column("user_agent", Text, nullable=False),
    Column("q", Float, nullable=False),
    Column("behind_nat", Boolean, nullable=False, server_default=false()),
    UniqueConstraint("tenant_id", "aor", "contact_uri"),
)

# Live SIP event subscriptions (BLF keys, presence, message waiting): one row per
# subscription dialog, so that they outlive a restart.
subscriptions = Table(
    "subscriptions",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("tenant_id", Integer, ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
    Column("package", String(32), nullable=False),
    Column("resource", String(32), nullable=False),
    Column("watcher", String(32), nullable=False),
    Column("entity", Text, nullable=False),
    Column("event", Text, nullable=False),
    Column("call_id", Text, nullable=False),
    Column("local_tag", String(64), nullable=False),
    Column("remote_tag", Text, nullable=False),
    Column("local_uri", Text, nullable=False),
    Column("remote_uri", Text, nullable=False),
    Column("remote_target", Text, nullable=False),
    Column("local_seq", Integer, nullable=False),
    Column("remote_seq", Integer, nullable=True),
    Column("route_set", Text, nullable=False),
    Column("source", String(300), nullable=False),
    Column("target", String(300), nullable=False),
    Column("behind_nat", Boolean, nullable=False),
    # Start-up deletes expired subscriptions by this column.
    Column("expires_at", Float, nullable=False, index=True),
    Column("version", Integer, nullable=False),
    UniqueConstraint("local_tag"),
)

# Call detail records: one row per call, one row per leg with its media quality.
call_records = Table(
    "call_records",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("tenant_id", Integer, ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
    Column("call_id", String(64), nullable=False, unique=True),
    Column("caller", String(64), nullable=False),
    Column("callee", String(64), nullable=False),
    # Epoch seconds; searches go by start time.
    Column("started", Float, nullable=False, index=True),
    Column("answered", Float, nullable=True),
    Column("ended", Float, nullable=False),
    Column("result", String(16), nullable=False),
    Column("digits", Text, nullable=False),
    Column("recording", Text, nullable=True),
    Column("path", Text, nullable=False, server_default=""),
    Column("direction", String(16), nullable=False, server_default="internal"),
    Column("person_answered", Float, nullable=True),
    Column("end_reason", String(32), nullable=True),
)

call_legs = Table(
    "call_legs",
    metadata,
    Column("id", Integer, primary_key=True),
    Column(
        "call_record_id",
        Integer,
        ForeignKey("call_records.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column("role", String(16), nullable=False),
    Column("peer", String(255), nullable=False),
    Column("codec", String(32), nullable=False),
    Column("packets_received", Integer, nullable=False),
    Column("packets_lost", Integer, nullable=False),
    Column("jitter_ms", Float, nullable=False),
    Column("rtt_ms", Float, nullable=True),
    Column("mos", Float, nullable=True),
)

# API tokens (hashed, never stored as given out) and the webhook outbox.
api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("tenant_id", Integer, ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
    Column("key_id", String(32), nullable=False, unique=True),
    Column("scope", String(16), nullable=False),
    Column("salt", String(64), nullable=False),
    Column("digest", String(64), nullable=False),
    Column("name", String(255), nullable=False),
    Column("created", Float, nullable=False),
)

# One row per (event, webhook), written when the event is published and kept as the
# delivery log: pending rows are what the delivery worker sends, also after a restart.
webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("tenant_id", Integer, ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
    Column("event_id", String(32), nullable=False),
    Column("event_type", String(64), nullable=False),
    Column("webhook", String(2048), nullable=False),
    Column("payload", Text, nullable=False),
    Column("created", Float, nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt", Float, nullable=True),
    Column("delivered_at", Float, nullable=True),
    Column("last_error", Text, nullable=False),
    UniqueConstraint("event_id", "webhook"),
    # The worker's query: the oldest pending row of a webhook.
    Index("ix_webhook_deliveries_webhook_status", "webhook", "status"),
)

# Asterisk's queue_log, one row per event of a call queue (pbx/queue/log.py): what the
# queue analytics and the queue_log export read. `data` holds the event's fields joined
# with "|", as the export writes them.
queue_log = Table(
    "queue_log",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("tenant_id", Integer, ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
    # Epoch seconds; the export and the analytics read a span of time.
    Column("time", Float, nullable=False, index=True),
    Column("call_id", String(64), nullable=False),
    Column("queue", String(64), nullable=False),
    Column("agent", String(64), nullable=False),
    Column("event", String(32), nullable=False),
    Column("data", Text, nullable=False),
)

# The web administration's users: an argon2 hash of the password, never the password;
# `failures` counts the wrong passwords in a row and `locked_until` ends a lock-out
# (web/accounts.py). A session row keeps the SHA-256 of the cookie's session id and the
# CSRF token its forms carry.
admin_users = Table(
    "admin_users",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("tenant_id", Integer, ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(64), nullable=False, unique=True),
    Column("role", String(16), nullable=False),
    Column("password_hash", String(255), nullable=False),
    Column("created", Float, nullable=False),
    Column("failures", Integer, nullable=False),
    Column("locked_until", Float, nullable=True),
    # The client addresses of those failures, space-separated.
    Column("failed_from", String(1024), nullable=False, server_default=""),
)

admin_sessions = Table(
    "admin_sessions",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("user_id", Integer, ForeignKey("admin_users.id", ondelete="CASCADE"), nullable=False),
    Column("digest", String(64), nullable=False, unique=True),
    Column("csrf", String(64), nullable=False),
    Column("expires", Float, nullable=False),
)

# Configuration items provisioned through the API or `ipbx apply` (pbx/provisioning.py):
# one row per item, its body the JSON of the same item in the configuration file.
provisioned = Table(
    "provisioned",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("tenant_id", Integer, ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("key", String(2048), nullable=False),
    Column("body", Text, nullable=False),
    Column("updated", Float, nullable=False),
    UniqueConstraint("tenant_id", "kind", "key"),
)

# Counters bumped in the transaction of every provisioning change; a node that sees
# `config` move reloads (the nodes of a cluster share one database).
revisions = Table(
    "revisions",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("value", Integer, nullable=False),
)

# Text messages (SIP MESSAGE, RFC 3428; pbx/messaging.py), between extensions and to and
# from outside numbers. `status` is pending (stored for an extension with no phone
# reachable), delivered or failed. A MESSAGE is one row: its Call-ID, CSeq and From tag
# are unique, so a request sent again (not a retransmission, which the transaction layer
# absorbs) is not stored twice.
messages = Table(
    "messages",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("tenant_id", Integer, ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
    Column("time", Float, nullable=False, index=True),
    Column("direction", String(16), nullable=False),
    Column("sender", String(64), nullable=False),
    Column("recipient", String(64), nullable=False),
    Column("content_type", String(128), nullable=False),
    Column("body", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("status_time", Float, nullable=False),
    Column("trunk", String(64), nullable=True),
    Column("call_id", String(255), nullable=False),
    Column("cseq", Integer, nullable=False),
    Column("from_tag", String(128), nullable=False),
    UniqueConstraint("tenant_id", "call_id", "cseq", "from_tag"),
    # Delivery on registration reads an extension's pending messages.
    Index("ix_messages_recipient_status", "recipient", "status"),
)
