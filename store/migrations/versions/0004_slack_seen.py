"""slack_seen: Slack requests already handled, so a retry has one effect; digests.channel

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30 03:45:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "digests",
        sa.Column("channel", sa.String(length=16), server_default="email", nullable=False),
    )
    op.create_table(
        "slack_seen",
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("CURRENT_TIMESTAMP"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_slack_seen")),
    )


def downgrade() -> None:
    op.drop_table("slack_seen")
    with op.batch_alter_table("digests") as batch:
        batch.drop_column("channel")
