"""The initial schema: vms, vm_devices, vm_device_locks, vm_last_xml.

Revision ID: 0001
Revises:
Create Date: 2024-06-01

The column types are written out here (a migration is a frozen record of what it
did); tests/test_store.py checks the migrated database against monitor/store/schema.py.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
UTC_TIME = sa.DateTime(timezone=True)
UUID = sa.String(36)


def upgrade() -> None:
    op.create_table(
        "vms",
        sa.Column("id", UUID, primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("host", sa.Text),
        sa.Column("status", sa.Text),
        sa.Column("hash", sa.Text),
        sa.Column("hash_time", UTC_TIME),
        sa.Column("last_error_hash", sa.Text),
        sa.Column("last_error", sa.Text),
        sa.Column("definition", JSON, nullable=False),
        sa.Column("version", sa.Integer, nullable=False, server_default="0"),
    )
    op.create_index("ix_vms_host", "vms", ["host"])
    op.create_table(
        "vm_devices",
        sa.Column(
            "vm_id", UUID,
            sa.ForeignKey("vms.id", ondelete="CASCADE", name="fk_vm_devices_vm_id"),
            primary_key=True,
        ),
        sa.Column("device_id", UUID, primary_key=True),
        sa.Column("type", sa.Text, nullable=False),
        sa.Column("device", sa.Text, nullable=False),
        sa.Column("address", JSON, nullable=False),
        sa.Column("alias", sa.Text, nullable=False, server_default=""),
        sa.Column("spec_params", JSON, nullable=False),
        sa.Column("is_managed", sa.Boolean, nullable=False),
        sa.Column("is_plugged", sa.Boolean, nullable=False),
        sa.Column("is_readonly", sa.Boolean, nullable=False),
        sa.Column("logical_name", sa.Text),
        sa.Column("host_device", sa.Text),
        sa.Column("custom_properties", JSON, nullable=False),
    )
    op.create_index("ix_vm_devices_vm_id_alias", "vm_devices", ["vm_id", "alias"])
    op.create_table(
        "vm_device_locks",
        sa.Column("vm_id", UUID, primary_key=True),
        sa.Column("holder", sa.Text, nullable=False),
        sa.Column("expires_at", UTC_TIME, nullable=False),
    )
    op.create_table(
        "vm_last_xml",
        sa.Column(
            "vm_id", UUID,
            sa.ForeignKey("vms.id", ondelete="CASCADE", name="fk_vm_last_xml_vm_id"),
            primary_key=True,
        ),
        sa.Column("xml", sa.LargeBinary, nullable=False),
        sa.Column("fetched_at", UTC_TIME, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("vm_last_xml")
    op.drop_table("vm_device_locks")
    op.drop_index("ix_vm_devices_vm_id_alias", table_name="vm_devices")
    op.drop_table("vm_devices")
    op.drop_index("ix_vms_host", table_name="vms")
    op.drop_table("vms")
