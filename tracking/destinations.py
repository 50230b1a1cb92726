"""Where a click goes: each email's links, read from the database on its first click and kept,
since a sent email's links never change. A click is then answered without the database."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from sqlalchemy import Engine, select

from store.schema import links

# A click waits at most this long for the database (locked by another process, or down).
ANSWER_WITHIN_SECONDS = 1.0
# Emails whose links are kept; past this the cache starts again (a long-running server).
CACHED_EMAILS = 100_000


class DestinationUnavailable(Exception):
    """The database did not say where the link goes in time."""


@dataclass(frozen=True)
class Destination:
    url: str | None  # None: the hidden honeypot link, which only machines follow


class Destinations:
    def __init__(self, engine: Engine, answer_within: float = ANSWER_WITHIN_SECONDS) -> None:
        self._engine = engine
        self._answer_within = answer_within
        self._links: dict[int, dict[int, str | None]] = {}

    async def find(self, email_id: int, link_idx: int) -> Destination | None:
        """The link's destination; None when the email or its link does not exist."""
        email_links = self._links.get(email_id)
        if email_links is None:
            try:
                email_links = await asyncio.wait_for(
                    asyncio.to_thread(self._read, email_id), self._answer_within
                )
            except Exception as exc:  # down, locked, or slow: the reader is asked to retry
                raise DestinationUnavailable(str(exc) or type(exc).__name__) from None
            if not email_links:
                return None  # not kept: an email may yet be stored under a new id
            if len(self._links) >= CACHED_EMAILS:
                self._links.clear()
            self._links[email_id] = email_links
        if link_idx not in email_links:
            return None
        return Destination(email_links[link_idx])

    def _read(self, email_id: int) -> dict[int, str | None]:
        query = select(links.c.idx, links.c.url, links.c.honeypot).where(
            links.c.email_id == email_id
        )
        with self._engine.connect() as connection:
            return {row.idx: None if row.honeypot else row.url for row in connection.execute(query)}
