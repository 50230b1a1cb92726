from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, inspect

from store.migrate import current_revision, head_revision, upgrade
from store.schema import metadata


def test_upgrade_creates_every_table_of_the_schema(engine: Engine) -> None:
    assert set(inspect(engine).get_table_names()) >= set(metadata.tables)
    assert current_revision(engine) == head_revision()


def test_migrations_match_the_schema_exactly(engine: Engine) -> None:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, metadata) == []


def test_upgrade_twice_is_harmless(engine: Engine) -> None:
    upgrade(engine)
    assert current_revision(engine) == head_revision()
