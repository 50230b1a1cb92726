"""The hit journal: events.hit_id, journal_progress and set_aside_hits

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07 00:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    # A column and a unique index: no table copy on SQLite, whatever the events it holds.
    op.add_column("events", sa.Column("hit_id", sa.String(length=32), nullable=True))
    op.create_index(op.f("ix_events_hit_id"), "events", ["hit_id"], unique=True)
    op.create_table(
        "journal_progress",
        sa.Column("file", sa.String(length=255), nullable=False),
        sa.Column("loaded_to", sa.BigInteger(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("file", name=op.f("pk_journal_progress")),
    )
    op.create_table(
        "set_aside_hits",
        sa.Column("id", Id, nullable=False),
        sa.Column("file", sa.String(length=255), nullable=False),
        sa.Column("offset", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("record", sa.Text(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("CURRENT_TIMESTAMP"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_set_aside_hits")),
        sa.UniqueConstraint("file", "offset", name=op.f("uq_set_aside_hits_file_offset")),
    )


def downgrade() -> None:
    op.drop_table("set_aside_hits")
    op.drop_table("journal_progress")
    op.drop_index(op.f("ix_events_hit_id"), table_name="events")
    with op.batch_alter_table("events") as batch:
        batch.drop_column("hit_id")
