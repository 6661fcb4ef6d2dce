"""Live SIP event subscriptions (pbx/subscription.py: BLF keys, presence, message
waiting), kept so that they outlive a restart.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "subscriptions",
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("tenant_id", sa.Integer, nullable=False),
        sa.Column("package", sa.String(32), nullable=False),
        sa.Column("resource", sa.String(32), nullable=False),
        sa.Column("watcher", sa.String(32), nullable=False),
        sa.Column("entity", sa.Text, nullable=False),
        sa.Column("event", sa.Text, nullable=False),
        sa.Column("call_id", sa.Text, nullable=False),
        sa.Column("local_tag", sa.String(64), nullable=False),
        sa.Column("remote_tag", sa.Text, nullable=False),
        sa.Column("local_uri", sa.Text, nullable=False),
        sa.Column("remote_uri", sa.Text, nullable=False),
        sa.Column("remote_target", sa.Text, nullable=False),
        sa.Column("local_seq", sa.Integer, nullable=False),
        sa.Column("remote_seq", sa.Integer, nullable=True),
        sa.Column("route_set", sa.Text, nullable=False),
        sa.Column("source", sa.String(300), nullable=False),
        sa.Column("target", sa.String(300), nullable=False),
        sa.Column("behind_nat", sa.Boolean, nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_subscriptions"),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name="fk_subscriptions_tenant_id_tenants",
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint("local_tag", name="uq_subscriptions_local_tag"),
    )
    op.create_index("ix_subscriptions_expires_at", "subscriptions", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_subscriptions_expires_at", table_name="subscriptions")
    op.drop_table("subscriptions")
