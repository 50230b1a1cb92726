"""Alembic environment: runs on the connection handed over by store.migrate."""

from __future__ import annotations

from typing import Any, Literal

from alembic import context

from store.schema import UTCDateTime, metadata


def _render_item(type_: str, obj: Any, autogen_context: Any) -> str | Literal[False]:
    # Migrations must not depend on our Python-side types: UTCDateTime is DateTime in DDL.
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    render_item=_render_item,
    render_as_batch=True,
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
