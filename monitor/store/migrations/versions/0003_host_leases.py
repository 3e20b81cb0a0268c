"""Host leases and worker heartbeats: many workers share the hosts.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02

See docs/operations.md, "Many workers".
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

UTC_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "host_leases",
        sa.Column("host", sa.Text, primary_key=True),
        sa.Column("owner", sa.Text),
        sa.Column("epoch", sa.BigInteger, nullable=False, server_default="0"),
    )
    op.create_table(
        "worker_heartbeats",
        sa.Column("owner", sa.Text, primary_key=True),
        sa.Column("max_hosts", sa.Integer),
        sa.Column("started_at", UTC_TIME, nullable=False),
        sa.Column("expires_at", UTC_TIME, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("worker_heartbeats")
    op.drop_table("host_leases")
