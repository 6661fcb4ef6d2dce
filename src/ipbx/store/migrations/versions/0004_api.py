"""API tokens and the webhook outbox.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("tenant_id", sa.Integer, nullable=False),
        sa.Column("key_id", sa.String(32), nullable=False),
        sa.Column("scope", sa.String(16), nullable=False),
        sa.Column("salt", sa.String(64), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("created", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_api_tokens"),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name="fk_api_tokens_tenant_id_tenants",
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint("key_id", name="uq_api_tokens_key_id"),
    )
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("tenant_id", sa.Integer, nullable=False),
        sa.Column("event_id", sa.String(32), nullable=False),
        sa.Column("event_type", sa.String(64), nullable=False),
        sa.Column("webhook", sa.String(2048), nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("created", sa.Float, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt", sa.Float, nullable=True),
        sa.Column("delivered_at", sa.Float, nullable=True),
        sa.Column("last_error", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_webhook_deliveries"),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name="fk_webhook_deliveries_tenant_id_tenants",
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint("event_id", "webhook", name="uq_webhook_deliveries_event_id_webhook"),
    )
    op.create_index(
        "ix_webhook_deliveries_webhook_status", "webhook_deliveries", ["webhook", "status"]
    )


def downgrade() -> None:
    op.drop_table("webhook_deliveries")
    op.drop_table("api_tokens")
