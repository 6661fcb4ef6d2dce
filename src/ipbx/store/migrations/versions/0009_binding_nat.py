"""Whether a registration was made from behind NAT (pbx/nat.py), so that after a restart
requests still go to the phone's source address and not to its private Contact.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("registrations") as batch:
        batch.add_column(
            sa.Column("behind_nat", sa.Boolean, nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    with op.batch_alter_table("registrations") as batch:
        batch.drop_column("behind_nat")
