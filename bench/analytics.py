"""Benchmark: follow-up lists, a campaign report and stats over 100,000 emails and 1,000,000
events, on SQLite and PostgreSQL.

    .venv/bin/python bench/analytics.py [--runs 10] [--postgres URL | --no-postgres]

Seeds each database the same way (20 templates, 2,000 companies, 50,000 endusers, 3 senders,
campaigns of many sizes among them one of 10,000 recipients; opens, clicks, some by machines,
replies, auto-replies and bounces, with engagement rows made from them by the engagement rules),
then times each call of CALLS: one warm-up, then `--runs` runs, each in a connection of its own.
Judged by: the median of each call against its target.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import Engine, Table, create_engine, text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.context import Context  # noqa: E402
from bot.registry import run_text  # noqa: E402
from bot.users import User  # noqa: E402
from mailbeacon.context import command_context  # noqa: E402
from mailbeacon.settings import load_settings, with_generated_keys  # noqa: E402
from store.engine import DatabaseSettings, make_engine  # noqa: E402
from store.migrate import upgrade  # noqa: E402
from store.schema import (  # noqa: E402
    campaigns,
    companies,
    emails,
    endusers,
    engagements,
    events,
    templates,
    users,
)
from tracking.analytics import not_engaged, stats  # noqa: E402
from tracking.engagement import Tally, engagement_values  # noqa: E402

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/test"


@dataclass(frozen=True)
class Seeded:
    big_campaign: int  # the one of 10,000 recipients


# What is measured: name, target median in ms (None: none set), and the call. The judged
# calls are whole commands, as `/beacon` runs them (parse, permission, lookup, query, reply);
# the bare queries beneath them are timed too, for reference.
Call = Callable[[Context, Seeded], object]
CALLS: list[tuple[str, float | None, Call]] = [
    (
        "/beacon nonopeners <10,000-email campaign>",
        100,
        lambda context, seeded: run_text(f"nonopeners {seeded.big_campaign}", context),
    ),
    (
        "/beacon stats by template",
        500,
        lambda context, seeded: run_text("stats by template", context),
    ),
    (
        "/beacon campaign <10,000-email campaign>",
        None,
        lambda context, seeded: run_text(f"campaign {seeded.big_campaign}", context),
    ),
    (
        '  query: not_engaged(…, "opened")',
        None,
        lambda context, seeded: _on(context.engine, not_engaged, seeded.big_campaign, "opened"),
    ),
    (
        '  query: stats(by="template")',
        None,
        lambda context, seeded: _on(context.engine, stats, by="template", since=None),
    ),
]


def _on(engine: Engine, query: Callable[..., object], *args: Any, **kwargs: Any) -> object:
    with engine.connect() as connection:
        return query(connection, *args, **kwargs)


TEMPLATES, COMPANIES, ENDUSERS, SENDERS = 20, 2_000, 50_000, 3
EMAILS, BIG_CAMPAIGN, ONE_OFF = 100_000, 10_000, 1_000
NOW = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
MACHINE_OPENS = ("apple_mpp", "apple_mpp", "apple_mpp", "bot_user_agent", "sender")
MACHINE_CLICKS = ("link_burst", "head_request", "honeypot", "soon_after_send")
AGENT = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7)"


@dataclass
class Data:
    """Rows of every table, as tuples in the order of `columns`."""

    columns: dict[Table, tuple[str, ...]]
    rows: dict[Table, list[tuple[Any, ...]]] = field(default_factory=dict)


def generate(seed: int = 42) -> tuple[Data, Seeded]:
    # Who gets what (campaigns, audiences) and what came of it are drawn apart, so that tuning
    # the one leaves the other as it was.
    rng, outcomes = random.Random(seed), random.Random(seed + 1)
    data = Data(
        {
            users: ("id", "email", "name", "role"),
            templates: ("id", "key", "version", "subject", "body", "checksum"),
            companies: ("id", "name", "domain", "attributes"),
            endusers: ("id", "email", "name", "company_id", "attributes"),
            campaigns: (
                "id",
                "name",
                "template_id",
                "track_opens",
                "track_clicks",
                "sender_user_id",
                "status",
                "planned_count",
                "sent_count",
                "failed_count",
            ),
            emails: (
                "id",
                "campaign_id",
                "template_id",
                "sender_user_id",
                "enduser_id",
                "to_addrs",
                "cc_addrs",
                "subject",
                "message_id",
                "open_tracking",
                "click_tracking",
                "status",
                "idempotency_key",
                "sent_at",
            ),
            engagements: (
                "email_id",
                "enduser_id",
                "campaign_id",
                "template_id",
                "sender_user_id",
                *ENGAGEMENT_VALUES,
            ),
            events: (
                "id",
                "email_id",
                "kind",
                "at",
                "link_idx",
                "user_agent",
                "machine",
                "machine_reason",
                "inbound_message_id",
            ),
        }
    )
    data.rows[users] = [
        (i, f"sender{i}@us.example", f"Sender {i}", "admin" if i == 1 else "member")
        for i in range(1, SENDERS + 1)
    ]
    data.rows[templates] = [
        (i, f"template-{i:02d}", 1, "Hello", "Hello {{ enduser.name }}", f"{i:064d}")
        for i in range(1, TEMPLATES + 1)
    ]
    data.rows[companies] = [
        (i, f"Company {i:04d}", f"company{i}.example", "{}") for i in range(1, COMPANIES + 1)
    ]
    address = {i: f"user{i:05d}@company{i % COMPANIES + 1}.example" for i in range(1, ENDUSERS + 1)}
    data.rows[endusers] = [
        (i, address[i], f"User {i}", None if i % 20 == 0 else i % COMPANIES + 1, "{}")
        for i in range(1, ENDUSERS + 1)
    ]

    sizes = [BIG_CAMPAIGN]
    left = EMAILS - BIG_CAMPAIGN - ONE_OFF
    while left > 0:
        sizes.append(min(left, rng.choice((20, 50, 100, 250, 500, 1000, 2500, 5000))))
        left -= sizes[-1]
    sizes.append(ONE_OFF)  # the last "campaign": one-off emails, of no campaign
    email_rows: list[tuple[Any, ...]] = []
    engagement_rows: list[tuple[Any, ...]] = []
    event_rows: list[tuple[Any, ...]] = []
    campaign_rows: list[tuple[Any, ...]] = []
    email_id = 0
    for number, size in enumerate(sizes, start=1):
        one_off = number == len(sizes)
        campaign = None if one_off else number
        template = None if one_off else rng.randrange(TEMPLATES) + 1
        sender = rng.randrange(SENDERS) + 1
        opens, clicks = number == 1 or rng.random() > 0.1, number == 1 or rng.random() > 0.2
        started = NOW - timedelta(days=rng.uniform(1, 180))
        counts = {"sent": 0, "failed": 0}
        for position, enduser in enumerate(rng.sample(range(1, ENDUSERS + 1), size)):
            email_id += 1
            roll = rng.random()
            status = "failed" if roll < 0.01 else "planned" if roll < 0.015 else "sent"
            counts[status] = counts.get(status, 0) + 1
            sent_at = started + timedelta(seconds=position) if status == "sent" else None
            email_rows.append(
                (
                    email_id,
                    campaign,
                    template,
                    sender,
                    enduser,
                    json.dumps([address[enduser]]),
                    "[]",
                    "Hello",
                    f"<{email_id}@us.example>",
                    opens,
                    clicks,
                    status,
                    f"bench-{email_id}",
                    sent_at,
                )
            )
            tallies = []
            if sent_at is not None:
                happened = _happenings(outcomes, email_id, sent_at, opens, clicks)
                for kind, machine, at, reason in happened:
                    event_rows.append(
                        (
                            len(event_rows) + 1,
                            email_id,
                            kind,
                            at,
                            1 if kind == "click" else None,
                            AGENT if kind in ("open", "click") else None,
                            machine,
                            reason,
                            f"<in-{len(event_rows)}@them>"
                            if kind not in ("open", "click")
                            else None,
                        )
                    )
                    tallies.append(Tally(kind, machine, 1, at))
            values = engagement_values(tallies, open_tracking=opens, click_tracking=clicks)
            values["sent_at"] = sent_at
            engagement_rows.append(
                (
                    email_id,
                    enduser,
                    campaign,
                    template,
                    sender,
                    *(values[name] for name in ENGAGEMENT_VALUES),
                )
            )
        if not one_off:
            campaign_rows.append(
                (
                    number,
                    f"Campaign {number}",
                    template,
                    opens,
                    clicks,
                    sender,
                    "sent",
                    size,
                    counts["sent"],
                    counts["failed"],
                )
            )
    data.rows[campaigns] = campaign_rows
    data.rows[emails] = email_rows
    data.rows[engagements] = engagement_rows
    data.rows[events] = event_rows
    return data, Seeded(big_campaign=1)


ENGAGEMENT_VALUES = (
    "sent_at",
    "open_rate",
    "click_rate",
    "reply_rate",
    "open_rate_raw",
    "click_rate_raw",
    "opens",
    "opens_raw",
    "clicks",
    "clicks_raw",
    "replies",
    "first_opened_at",
    "first_clicked_at",
    "replied_at",
    "auto_replied_at",
    "bounced_at",
)


def _happenings(
    rng: random.Random, email_id: int, sent_at: datetime, opens: bool, clicks: bool
) -> list[tuple[str, bool, datetime, str | None]]:
    """What came of one sent email: (kind, machine, at, machine reason), ~10 on average."""
    if rng.random() < 0.02:
        return [("bounce", False, sent_at + timedelta(minutes=1), None)]
    happened: list[tuple[str, bool, datetime, str | None]] = []

    def some(kind: str, machine: bool, most: int, reason: str | None, after: float) -> None:
        first = sent_at + timedelta(seconds=after)
        for n in range(rng.randint(1, most)):
            happened.append((kind, machine, first + timedelta(minutes=37 * n), reason))

    if opens and rng.random() < 0.3:
        some("open", True, 6, rng.choice(MACHINE_OPENS), 2)
    if clicks and rng.random() < 0.1:
        some("click", True, 3, rng.choice(MACHINE_CLICKS), 1)
    if opens and rng.random() < 0.55:
        some("open", False, 35, None, rng.uniform(300, 3 * 86400))
    if clicks and rng.random() < 0.15:
        some("click", False, 6, None, rng.uniform(600, 3 * 86400))
    if rng.random() < 0.08:
        some("reply", False, 1, None, rng.uniform(3600, 5 * 86400))
    if rng.random() < 0.03:
        some("auto_reply", False, 1, None, 30)
    return happened


TABLES = (users, templates, companies, endusers, campaigns, emails, engagements, events)


def load(engine: Engine, data: Data) -> None:
    """Bulk loads: COPY on PostgreSQL, executemany in large chunks on SQLite."""
    with engine.begin() as connection:
        raw: Any = connection.connection.dbapi_connection
        for table in TABLES:
            columns, rows = data.columns[table], data.rows[table]
            if engine.dialect.name == "postgresql":
                with raw.cursor() as cursor:
                    sql = f"COPY {table.name} ({', '.join(columns)}) FROM STDIN"
                    with cursor.copy(sql) as copy:
                        for row in rows:
                            copy.write_row(row)
            else:
                sql = (
                    f"INSERT INTO {table.name} ({', '.join(columns)}) "
                    f"VALUES ({', '.join('?' * len(columns))})"
                )
                cursor = raw.cursor()
                for start in range(0, len(rows), 50_000):
                    cursor.executemany(sql, map(_sqlite_row, rows[start : start + 50_000]))
                cursor.close()
    if engine.dialect.name == "postgresql":
        # Autovacuum analyzes fresh tables within a minute or so; do it now rather than time
        # plans made blind. (SQLite never analyzes by itself, nor does mailbeacon: left as is.)
        with engine.begin() as connection:
            connection.execute(text("ANALYZE"))


def _sqlite_row(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """Timestamps as store.schema.UTCDateTime writes them on SQLite: naive UTC text."""
    return tuple(
        value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
        if isinstance(value, datetime)
        else value
        for value in row
    )


@dataclass(frozen=True)
class Timing:
    name: str
    target_ms: float | None
    runs_ms: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.runs_ms)

    @property
    def p90(self) -> float:
        return statistics.quantiles(self.runs_ms, n=10, method="inclusive")[-1]


def measure(context: Context, seeded: Seeded, runs: int) -> list[Timing]:
    timings = []
    for name, target, call in CALLS:
        call(context, seeded)  # warm-up: caches, compiled statements, pooled connection
        runs_ms = []
        for _ in range(runs):
            started = time.perf_counter()
            call(context, seeded)
            runs_ms.append((time.perf_counter() - started) * 1000)
        timings.append(Timing(name, target, runs_ms))
    return timings


def report(database: str, timings: Sequence[Timing]) -> bool:
    """Prints the table; whether every target was met."""
    print(f"\n{database}")
    print(f"{'call':42} {'min':>8} {'median':>8} {'p90':>8} {'target':>8} {'median/target':>14}")
    met = True
    for t in timings:
        ratio = f"{t.median / t.target_ms:.2f}" if t.target_ms else "-"
        target = f"{t.target_ms:.0f}" if t.target_ms else "-"
        print(
            f"{t.name:42} {min(t.runs_ms):8.1f} {t.median:8.1f} {t.p90:8.1f} {target:>8} "
            f"{ratio:>14}"
        )
        met &= t.target_ms is None or t.median < t.target_ms
    return met


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument(
        "--postgres", default=os.environ.get("MAILBEACON_TEST_DATABASE_URL", DEFAULT_PG)
    )
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()

    started = time.perf_counter()
    data, seeded = generate()
    print(
        f"generated {len(data.rows[emails]):,} emails, {len(data.rows[events]):,} events, "
        f"{len(data.rows[campaigns]):,} campaigns in {time.perf_counter() - started:.1f} s "
        f"({os.cpu_count()} cores)",
        flush=True,
    )
    met = True
    with tempfile.TemporaryDirectory(prefix="mailbeacon-bench-") as folder:
        databases = [("sqlite (WAL, file)", f"sqlite:///{folder}/bench.db")]
        with _postgres_schema(None if args.no_postgres else args.postgres) as postgres:
            if postgres:
                databases.append(("postgresql", postgres))
            for name, url in databases:
                engine = make_engine(DatabaseSettings(url=url))
                upgrade(engine)
                started = time.perf_counter()
                load(engine, data)
                print(f"{name}: seeded in {time.perf_counter() - started:.1f} s", flush=True)
                settings = with_generated_keys(
                    load_settings(None, {"MAILBEACON__DATA_DIR": folder})
                )
                admin = User(1, "sender1@us.example", "Sender 1", "admin", "UTC", None, None)
                context = command_context(settings, engine, admin)
                met &= report(name, measure(context, seeded, args.runs))
                engine.dispose()
    print(f"\njudged: {'every target met' if met else 'a target was missed'} (medians)")
    return 0 if met else 1


@contextmanager
def _postgres_schema(url: str | None) -> Iterator[str | None]:
    """A PostgreSQL schema of its own, dropped afterwards: its URL; None when skipped."""
    if url is None:
        yield None
        return
    admin = create_engine(
        url.replace("postgresql://", "postgresql+psycopg://", 1),
        connect_args={"connect_timeout": 2},
    )
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    try:
        with admin.begin() as connection:
            connection.execute(text(f"CREATE SCHEMA {schema}"))
    except Exception as error:
        print(f"PostgreSQL not reachable at {url}: skipped ({type(error).__name__})")
        admin.dispose()
        yield None
        return
    try:
        separator = "&" if "?" in url else "?"
        yield f"{url}{separator}options={quote(f'-csearch_path={schema}')}"
    finally:
        with admin.begin() as connection:
            connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


if __name__ == "__main__":
    sys.exit(main())
