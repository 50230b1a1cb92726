"""users.quiet_hours: when a user's alerts wait

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 23:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("users", sa.Column("quiet_hours", sa.String(length=11), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.drop_column("quiet_hours")
