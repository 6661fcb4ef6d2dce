"""Text messages (SIP MESSAGE, RFC 3428) and their delivery status.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "messages",
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("tenant_id", sa.Integer, nullable=False),
        sa.Column("time", sa.Float, nullable=False),
        sa.Column("direction", sa.String(16), nullable=False),
        sa.Column("sender", sa.String(64), nullable=False),
        sa.Column("recipient", sa.String(64), nullable=False),
        sa.Column("content_type", sa.String(128), nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("status_time", sa.Float, nullable=False),
        sa.Column("trunk", sa.String(64), nullable=True),
        sa.Column("call_id", sa.String(255), nullable=False),
        sa.Column("cseq", sa.Integer, nullable=False),
        sa.Column("from_tag", sa.String(128), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_messages"),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name="fk_messages_tenant_id_tenants", ondelete="CASCADE"
        ),
        sa.UniqueConstraint(
            "tenant_id",
            "call_id",
            "cseq",
            "from_tag",
            name="uq_messages_tenant_id_call_id_cseq_from_tag",
        ),
    )
    op.create_index("ix_messages_time", "messages", ["time"])
    op.create_index("ix_messages_recipient_status", "messages", ["recipient", "status"])


def downgrade() -> None:
    op.drop_index("ix_messages_recipient_status", "messages")
    op.drop_index("ix_messages_time", "messages")
    op.drop_table("messages")
