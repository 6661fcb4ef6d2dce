"""Call detail records and their legs.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "call_records",
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("tenant_id", sa.Integer, nullable=False),
        sa.Column("call_id", sa.String(64), nullable=False),
        sa.Column("caller", sa.String(64), nullable=False),
        sa.Column("callee", sa.String(64), nullable=False),
        sa.Column("started", sa.Float, nullable=False),
        sa.Column("answered", sa.Float, nullable=True),
        sa.Column("ended", sa.Float, nullable=False),
        sa.Column("result", sa.String(16), nullable=False),
        sa.Column("digits", sa.Text, nullable=False),
        sa.Column("recording", sa.Text, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_call_records"),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name="fk_call_records_tenant_id_tenants",
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint("call_id", name="uq_call_records_call_id"),
    )
    op.create_index("ix_call_records_started", "call_records", ["started"])
    op.create_table(
        "call_legs",
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("call_record_id", sa.Integer, nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("peer", sa.String(255), nullable=False),
        sa.Column("codec", sa.String(32), nullable=False),
        sa.Column("packets_received", sa.Integer, nullable=False),
        sa.Column("packets_lost", sa.Integer, nullable=False),
        sa.Column("jitter_ms", sa.Float, nullable=False),
        sa.Column("rtt_ms", sa.Float, nullable=True),
        sa.Column("mos", sa.Float, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_call_legs"),
        sa.ForeignKeyConstraint(
            ["call_record_id"],
            ["call_records.id"],
            name="fk_call_legs_call_record_id_call_records",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_call_legs_call_record_id", "call_legs", ["call_record_id"])


def downgrade() -> None:
    op.drop_table("call_legs")
    op.drop_table("call_records")
