"""Room in each page for in-place (HOT) updates of device rows and VMs, on PostgreSQL.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02

A full tick rewrites nearly every device row's address and every VM's hash. With full
pages PostgreSQL writes each new row version to another page and inserts it into every
index; with free room in the page and no indexed column changed, the update stays in
the page (a heap-only tuple) and no index is touched. See docs/performance.md.
SQLite has no such setting: nothing to do there.
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TABLES = ("vm_devices", "vms")
FILLFACTOR = 70  # monitor/store/schema.py says the same


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in TABLES:
        # Applies to pages written from now on; existing pages gain room as rows move.
        op.execute(f"ALTER TABLE {table} SET (fillfactor = {FILLFACTOR})")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in TABLES:
        op.execute(f"ALTER TABLE {table} RESET (fillfactor)")
