"""Which way a call went (internal, inbound, outbound), on its record, for analytics.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("call_records") as batch:
        batch.add_column(
            sa.Column("direction", sa.String(16), nullable=False, server_default="internal")
        )


def downgrade() -> None:
    with op.batch_alter_table("call_records") as batch:
        batch.drop_column("direction")
