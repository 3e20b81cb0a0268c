"""The devices lock gets a token: a fresh one each time the lock is taken.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02

A tick checks, in the transaction that applies a VM, that the lock row still carries
its holder *and its token* (docs/worker.md, "The fence"): a lock that expired and was
taken again, even by the same holder name, is no longer this tick's. Rows taken before
this revision have the empty token, which no taking hands out.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("vm_device_locks") as table:
        table.add_column(sa.Column("token", sa.String(32), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("vm_device_locks") as table:
        table.drop_column("token")
