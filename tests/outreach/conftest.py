"""The example endusers and companies, seeded for the audience and filter tests."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from outreach.importer import import_file
from store.schema import endusers

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
NOW = datetime(2024, 6, 1, 9, 30, tzinfo=UTC)

EXTRA: list[dict[str, Any]] = [
    {
        "email": "zoe@nowhere.example",
        "name": "Zoe Quinn",
        "attributes": {
            "vip": True,
            "tags": [1, 2, "x"],
            "score": 4.5,
            "nickname": "",
            "seats": "many",
            "note": "Über 100% done",
            "nested": [["Tracking"]],
        },
    },
    {
        "email": "yan@nowhere.example",
        "name": "yan li",
        "attributes": {"vip": False, "tags": [], "nickname": None, "note": "plain_text"},
    },
]


@pytest.fixture
def seeded(engine: Engine) -> Engine:
    """The example companies and endusers, and two endusers without a company (EXTRA)."""
    for name in ("companies.csv", "endusers.csv"):
        assert import_file(engine, EXAMPLES / name, now=NOW).bad_rows == []
    with engine.begin() as connection:
        connection.execute(endusers.insert(), EXTRA)
    return engine
