"""The last Domain XML compressed with lz4 on PostgreSQL, where the server has it.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04

A tick stores every document it read (~9 KB each) as the VM's last XML. PostgreSQL
compresses a value that large before it stores it, with pglz unless a column asks for
another method; lz4 compresses these documents about as small in a third of the
server's time, and a full tick writes one per VM (docs/performance.md, "The tenth
wave"). Values stored before keep their method: both read back the same.

lz4 exists from PostgreSQL 14 on, in servers built with it: the server lists it among
``default_toast_compression``'s values. Where it does not, nothing changes (pglz).
SQLite stores the bytes as they come: nothing to do there.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# True when the server can compress with lz4 (no row: before PostgreSQL 14).
SERVER_HAS_LZ4 = sa.text(
    "SELECT 'lz4' = ANY(enumvals) FROM pg_settings WHERE name = 'default_toast_compression'")


def _lz4_available() -> bool:
    bind = op.get_bind()
    return bind.dialect.name == "postgresql" and bool(bind.execute(SERVER_HAS_LZ4).scalar())


def upgrade() -> None:
    if _lz4_available():
        op.execute("ALTER TABLE vm_last_xml ALTER COLUMN xml SET COMPRESSION lz4")


def downgrade() -> None:
    if _lz4_available():
        op.execute("ALTER TABLE vm_last_xml ALTER COLUMN xml SET COMPRESSION DEFAULT")
