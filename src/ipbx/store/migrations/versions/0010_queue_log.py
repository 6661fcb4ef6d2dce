"""Asterisk's queue_log: the events of the call queues, for their analytics and export.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "queue_log",
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("tenant_id", sa.Integer, nullable=False),
        sa.Column("time", sa.Float, nullable=False),
        sa.Column("call_id", sa.String(64), nullable=False),
        sa.Column("queue", sa.String(64), nullable=False),
        sa.Column("agent", sa.String(64), nullable=False),
        sa.Column("event", sa.String(32), nullable=False),
        sa.Column("data", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_queue_log"),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name="fk_queue_log_tenant_id_tenants", ondelete="CASCADE"
        ),
    )
    op.create_index("ix_queue_log_time", "queue_log", ["time"])


def downgrade() -> None:
    op.drop_index("ix_queue_log_time", "queue_log")
    op.drop_table("queue_log")
