"""Persistent state: provisioning (tenants, extensions) and registrations.

This package is the only code that speaks SQL. Callers get dataclasses, never ORM rows.
"""

from ipbx.store.records import DEFAULT_TENANT, BindingRecord, ExtensionRecord
from ipbx.store.store import Store, UnknownTenantError

__all__ = ["DEFAULT_TENANT", "BindingRecord", "ExtensionRecord", "Store", "UnknownTenantError"]
