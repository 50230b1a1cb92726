"""Persistence: the schema, engines and sessions, and the Alembic migrations."""
