"""Persistent state: provisioning (tenants, extensions), registrations and call records.

This package is the only code that speaks SQL. Callers get dataclasses, never ORM rows.
"""

from ipbx.store.async_store import AsyncStore
from ipbx.store.database import UnknownTenantError
from ipbx.store.provisioning import TenantInUse
from ipbx.store.records import (
    DEFAULT_TENANT,
    AdminSessionRecord,
    AdminUserRecord,
    ApiTokenRecord,
    BindingRecord,
    CallRecord,
    DeliveryRecord,
    ExtensionRecord,
    LegRecord,
    MessageRecord,
    ProvisionedRecord,
    QueueLogRecord,
    SubscriptionRecord,
    TenantRecord,
)
from ipbx.store.store import Store

__all__ = [
    "DEFAULT_TENANT",
    "AdminSessionRecord",
    "AdminUserRecord",
    "ApiTokenRecord",
    "AsyncStore",
    "BindingRecord",
    "CallRecord",
    "DeliveryRecord",
    "ExtensionRecord",
    "LegRecord",
    "MessageRecord",
    "ProvisionedRecord",
    "QueueLogRecord",
    "Store",
    "SubscriptionRecord",
    "TenantInUse",
    "TenantRecord",
    "UnknownTenantError",
]
