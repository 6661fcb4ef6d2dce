"""`Store`: the only object that speaks SQL.

One engine per process, Core statements rather than ORM sessions: the registrar calls
`save_bindings` for every REGISTER, thousands of times a second, and the ORM's unit of
work would cost more than the SQL itself.

Each concern has its own module (provisioning, registrations, subscriptions, call
records, the call queues' log, text messages, API tokens, the web administration's
users, the webhook outbox); `Store` is all of them over one engine. Its calls block until
the database answers (up to busy_timeout when another process holds SQLite's write
lock): code on the event loop reaches it through `AsyncStore`, never directly.
"""

from ipbx.store.admin_users import AdminUsers
from ipbx.store.call_records import CallRecords
from ipbx.store.messages import MessageRows
from ipbx.store.outbox import WebhookOutbox
from ipbx.store.provisioning import Provisioning
from ipbx.store.queue_log import QueueLogRows
from ipbx.store.registrations import Registrations
from ipbx.store.subscriptions import SubscriptionRows
from ipbx.store.tokens import ApiTokens


class Store(
    Provisioning,
    Registrations,
    SubscriptionRows,
    CallRecords,
    QueueLogRows,
    MessageRows,
    ApiTokens,
    AdminUsers,
    WebhookOutbox,
):
    """Provisioning, registration, call-record, queue-log, message, token, web user and webhook
    state, in SQLite (default) or PostgreSQL. Safe to share between threads (SQLAlchemy's
    engine pools the connections)."""
