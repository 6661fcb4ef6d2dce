"""Call records written before records knew who answered: after the migration, a call
that ended in a menu, a mailbox, an announcement, a feature code or on the blacklist
says so; any other answered call keeps `answered`, its answer time as the person's."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import command
from alembic.config import Config as AlembicConfig

from ipbx.store import Store
from ipbx.store.database import MIGRATIONS_DIR

# call_id, path, result, answered: as the records said before.
OLD_ROWS = [
    ("talked", "extension:1001", "answered", 10.0),
    ("in-menu", "ivr:main", "answered", 20.0),
    ("menu-timed-out", "ivr:main,hangup", "answered", 30.0),
    ("mailbox", "extension:1001,voicemail:1001", "answered", 40.0),
    ("closed", "schedule:office,announcement:closed", "answered", 50.0),
    ("dnd-on", "feature:*78", "answered", 60.0),
    ("blacklisted", "blacklist", "failed", None),
    ("via-menu", "ivr:main,extension:1001", "answered", 70.0),
    ("busy", "extension:1001", "busy", None),
]


def test_old_records_say_who_answered_as_far_as_they_can_tell(store_url: str) -> None:
    store = Store(store_url)  # makes the SQLite file's folder
    engine = sa.create_engine(store_url)
    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0006")
        tenant = connection.scalar(sa.text("SELECT id FROM tenants WHERE domain = 'default'"))
        connection.execute(
            sa.text(
                "INSERT INTO call_records (tenant_id, call_id, caller, callee, started,"
                " answered, ended, result, digits, path) VALUES (:tenant, :call_id, '1000',"
                " '1001', 1.0, :answered, 99.0, :result, '', :path)"
            ),
            [
                {"tenant": tenant, "call_id": c, "path": p, "result": r, "answered": a}
                for c, p, r, a in OLD_ROWS
            ],
        )
    engine.dispose()
    store.migrate()
    records = {r.call_id: r for r in store.call_records(limit=100)}
    store.close()
    assert {c: (r.result, r.person_answered) for c, r in records.items()} == {
        "talked": ("answered", 10.0),
        "in-menu": ("menu", None),
        "menu-timed-out": ("menu", None),
        "mailbox": ("voicemail", None),
        "closed": ("announcement", None),
        "dnd-on": ("service", None),
        "blacklisted": ("blocked", None),
        "via-menu": ("answered", 70.0),  # a phone may have answered: as it was
        "busy": ("busy", None),
    }
    assert records["in-menu"].answered == 20.0  # ipbx's answer stays: the billed time
