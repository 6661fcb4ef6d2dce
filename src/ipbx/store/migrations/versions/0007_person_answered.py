"""When a person answered a call, on its record, and results for calls that ended in
a call flow (menu, voicemail, announcement, blocked, service) instead of "answered".

Older records only know when the caller's INVITE was answered, by a phone or by ipbx's
own call flow. What they tell is kept as far as it goes:
- a call on the blacklist is `blocked`;
- an answered call whose path ends in a menu, a mailbox, an announcement or a feature
  code (no phone can have taken it there) gets that result and no person_answered;
- every other answered call keeps `answered`, with person_answered = answered. For a
  call a menu or a group answered before a phone took it, that is the menu's answer
  time, as those records always said; the phone's answer time was never recorded.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

# The last step of the path that held the caller -> the result; schedule and hangup
# steps only chose where the call went next.
_FLOWS = {"ivr": "menu", "voicemail": "voicemail", "announcement": "announcement"}
_PASSING = ("schedule", "hangup")
_OLD_RESULTS = ("answered", "busy", "no_answer", "cancelled", "failed")


def upgrade() -> None:
    with op.batch_alter_table("call_records") as batch:
        batch.add_column(sa.Column("person_answered", sa.Float, nullable=True))
    connection = op.get_bind()
    rows = connection.execute(
        sa.text(
            "SELECT id, path, result, answered FROM call_records"
            " WHERE result = 'answered' OR path LIKE '%blacklist%'"
        )
    ).all()
    updates = [_updated(row.id, row.path, row.result, row.answered) for row in rows]
    if updates:
        connection.execute(
            sa.text("UPDATE call_records SET result = :result, person_answered = :person"
                    " WHERE id = :id"),
            updates,
        )  # fmt: skip


def _updated(row_id: int, path: str, result: str, answered: float | None) -> dict[str, object]:
    steps = [step for step in path.split(",") if step]
    if "blacklist" in steps:
        return {"id": row_id, "result": "blocked", "person": None}
    for step in reversed(steps):
        kind = step.partition(":")[0]
        if kind in _PASSING:
            continue
        if kind == "feature":
            return {"id": row_id, "result": "service", "person": None}
        if kind in _FLOWS:
            return {"id": row_id, "result": _FLOWS[kind], "person": None}
        break
    return {"id": row_id, "result": result, "person": answered}


def downgrade() -> None:
    placeholders = ", ".join(f"'{r}'" for r in _OLD_RESULTS)
    op.execute(
        "UPDATE call_records SET result = CASE WHEN person_answered IS NOT NULL"
        " OR answered IS NOT NULL THEN 'answered' ELSE 'failed' END"
        f" WHERE result NOT IN ({placeholders})"
    )
    with op.batch_alter_table("call_records") as batch:
        batch.drop_column("person_answered")
