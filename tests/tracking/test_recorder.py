"""The recorder against each database: batches, concurrent writers, reclassification."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import Engine, delete, func, select, update

from outreach.emails import Draft, create_email, mark_sent
from store.clock import utcnow
from store.engine import DatabaseSettings, make_engine
from store.schema import emails, endusers, engagements, events, links
from tracking.analytics import average_rates
from tracking.classify import Hit, Rules
from tracking.instrument import TrackingFlags
from tracking.record import FACTS_TTL_SECONDS, EmailCache
from tracking.recorder import MAX_USER_AGENT, Recorder, RecorderUnavailable, clean_hit
from tracking.settings import TrackingSettings
from tracking.tokens import TokenSigner

SETTINGS = TrackingSettings(base_url="https://t.example")
SIGNER = TokenSigner(["k" * 32])
PERSON = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Thunderbird/128.0"
TRACKED = TrackingFlags(opens=True, clicks=True)
HTML = '<html><body><a href="https://a.example/1">1</a><a href="https://a.example/2">2</a></body></html>'


def _send(engine: Engine, key: str, flags: TrackingFlags = TRACKED) -> int:
    with engine.begin() as connection:
        email_id, _ = create_email(
            connection, Draft(key, [f"{key}@c.example"], "Hi", HTML, "", flags), SIGNER, SETTINGS
        )
        mark_sent(
            connection, email_id, message_id=f"<{key}@t>", sent_at=utcnow() - timedelta(hours=1)
        )
    return email_id


def _hit(kind: str = "open", link_idx: int | None = None, ip: str = "198.51.100.1") -> Hit:
    return Hit(kind, utcnow(), link_idx, user_agent=PERSON, ip=ip)  # type: ignore[arg-type]


def test_two_recorders_writing_the_same_emails_at_once_lose_nothing(
    engine: Engine, db_url: str
) -> None:
    """As two web processes would on PostgreSQL: each has its own engine and writer thread."""
    first, second = _send(engine, "a"), _send(engine, "b")
    other_engine = make_engine(DatabaseSettings(url=db_url))

    async def play() -> None:
        recorders = [Recorder(e, SETTINGS, Rules()) for e in (engine, other_engine)]
        for recorder in recorders:
            recorder.start()
        hits = [
            recorder.record(email_id, _hit())
            for recorder in recorders
            for email_id in (first, second)
            for _ in range(150)
        ]
        await asyncio.gather(*hits)
        for recorder in recorders:
            await recorder.stop()

    asyncio.run(play())
    other_engine.dispose()
    with engine.connect() as connection:
        for email_id in (first, second):
            row = connection.execute(
                select(engagements).where(engagements.c.email_id == email_id)
            ).one()
            assert (row.opens, row.opens_raw, row.open_rate) == (300, 300, 100)
            count = connection.scalar(
                select(func.count()).select_from(events).where(events.c.email_id == email_id)
            )
            assert count == 300


def test_reclassification_recounts_the_engagement_row(engine: Engine) -> None:
    email_id = _send(engine, "c")

    async def play() -> None:
        recorder = Recorder(engine, SETTINGS, Rules())
        recorder.start()
        await recorder.record(email_id, _hit("open"))
        await recorder.record(email_id, _hit("click", 1))
        with engine.connect() as connection:
            row = connection.execute(select(engagements)).one()
            assert (row.open_rate, row.click_rate, row.opens, row.clicks) == (100, 100, 1, 1)
        result = await recorder.record(email_id, _hit("click", 0))  # the honeypot
        assert result.found and result.destination is None
        await recorder.stop()

    asyncio.run(play())
    with engine.connect() as connection:
        row = connection.execute(select(engagements)).one()
    assert (row.open_rate, row.click_rate, row.opens, row.clicks) == (0, 0, 0, 0)
    assert (row.open_rate_raw, row.click_rate_raw, row.opens_raw, row.clicks_raw) == (
        100,
        100,
        1,
        2,
    )
    assert row.first_opened_at is None and row.first_clicked_at is None


def test_a_stopped_recorder_refuses_hits() -> None:
    engine = make_engine(DatabaseSettings(url="sqlite://"))
    recorder = Recorder(engine, SETTINGS, Rules())

    async def play() -> None:
        try:
            await recorder.record(1, _hit())
        except RecorderUnavailable:
            return
        raise AssertionError("a hit was accepted by a recorder that is not running")

    asyncio.run(play())


def test_rates_average_only_tracked_emails_and_are_human_unless_raw(engine: Engine) -> None:
    opened, machine_only, untracked, silent = (
        _send(engine, "h"),
        _send(engine, "m"),
        _send(engine, "u", TrackingFlags(False, False)),
        _send(engine, "s"),
    )

    async def play() -> None:
        recorder = Recorder(engine, SETTINGS, Rules())
        recorder.start()
        await recorder.record(opened, _hit())
        await recorder.record(machine_only, Hit("open", utcnow(), user_agent="Mozilla/5.0"))
        await recorder.record(untracked, _hit())  # not tracked: not recorded
        await recorder.stop()

    asyncio.run(play())
    assert silent
    with engine.connect() as connection:
        human, raw = average_rates(connection), average_rates(connection, raw=True)
    assert (human.emails, human.open_rate, human.click_rate, human.reply_rate) == (
        4,
        33.3,
        0.0,
        0.0,
    )
    assert (raw.open_rate, raw.click_rate) == (66.7, 0.0)


def test_email_facts_are_cached_briefly_so_an_opt_out_takes_effect(engine: Engine) -> None:
    email_id = _send(engine, "o")
    with engine.begin() as connection:
        enduser = connection.execute(
            endusers.insert().values(email="o@c.example", attributes={}).returning(endusers.c.id)
        ).scalar_one()
        connection.execute(update(emails).values(enduser_id=enduser))
    now = [0.0]
    cache = EmailCache(clock=lambda: now[0])

    def opted_out() -> bool:
        with engine.connect() as connection:
            return cache.lookup(connection, {email_id}, set())[email_id].opt_out

    assert not opted_out()
    with engine.begin() as connection:
        connection.execute(update(endusers).values(tracking_opt_out=True))
    assert not opted_out()  # still the cached facts
    now[0] += FACTS_TTL_SECONDS + 1
    assert opted_out()
    with engine.begin() as connection:
        for table in (links, engagements, emails):
            connection.execute(delete(table))
    now[0] += FACTS_TTL_SECONDS + 1
    with engine.connect() as connection:
        assert cache.lookup(connection, {email_id}, set()) == {}


@pytest.mark.parametrize(
    ("ip", "anonymize", "stored"),
    [
        ("198.51.100.7", False, "198.51.100.7"),
        ("2001:DB8:0:0::1", False, "2001:db8::1"),
        ("fe80::1%" + "e" * 60, False, "fe80::1"),
        ("a" * 200, False, ""),
        ("198.51.100.7:443", False, ""),
        ("unknown", True, ""),
        ("198.51.100.77", True, "198.51.100.0"),
    ],
)
def test_a_hit_is_cleaned_to_what_may_be_stored(ip: str, anonymize: bool, stored: str) -> None:
    hit = clean_hit(Hit("open", utcnow(), user_agent="x" * 5000, ip=ip), anonymize=anonymize)
    assert (hit.ip, len(hit.user_agent)) == (stored, MAX_USER_AGENT)
