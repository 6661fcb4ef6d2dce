"""Tenants, extensions and registrations.

Revision ID: 0001
Revises:
Create Date: 2024-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    tenants = op.create_table(
        "tenants",
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("domain", sa.String(255), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_tenants"),
        sa.UniqueConstraint("domain", name="uq_tenants_domain"),
    )
    op.create_table(
        "extensions",
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("tenant_id", sa.Integer, nullable=False),
        sa.Column("number", sa.String(32), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("ha1_md5", sa.String(32), nullable=False),
        sa.Column("ha1_sha256", sa.String(64), nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_extensions"),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name="fk_extensions_tenant_id_tenants",
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint("tenant_id", "number", name="uq_extensions_tenant_id_number"),
    )
    op.create_table(
        "registrations",
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("tenant_id", sa.Integer, nullable=False),
        sa.Column("aor", sa.String(32), nullable=False),
        sa.Column("contact_uri", sa.Text, nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
        sa.Column("call_id", sa.Text, nullable=False),
        sa.Column("cseq", sa.Integer, nullable=False),
        sa.Column("received_transport", sa.String(8), nullable=False),
        sa.Column("received_host", sa.String(255), nullable=False),
        sa.Column("received_port", sa.Integer, nullable=False),
        sa.Column("instance_id", sa.Text, nullable=True),
        sa.Column("user_agent", sa.Text, nullable=False),
        sa.Column("q", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_registrations"),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name="fk_registrations_tenant_id_tenants",
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint(
            "tenant_id", "aor", "contact_uri", name="uq_registrations_tenant_id_aor_contact_uri"
        ),
    )
    op.create_index("ix_registrations_expires_at", "registrations", ["expires_at"])
    # The default tenant always exists: a single-company install never names a tenant.
    op.bulk_insert(tenants, [{"domain": "default", "name": "Default"}])


def downgrade() -> None:
    op.drop_table("registrations")
    op.drop_table("extensions")
    op.drop_table("tenants")
