"""The hit journal and its loader against each database: records, batches, concurrent
loaders, reclassification, and every way a journal file can end."""

from __future__ import annotations

import asyncio
import fcntl
import multiprocessing
import os
import signal
import threading
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, delete, event, func, select, update

from store.clock import utcnow
from store.engine import DatabaseSettings, make_engine
from store.schema import (
    emails,
    endusers,
    engagements,
    events,
    journal_progress,
    links,
    set_aside_hits,
)
from tests.helpers import journal_hits, record_hits, sent_email
from tracking.analytics import average_rates
from tracking.classify import Hit, Rules
from tracking.clean import anonymize_ip, valid_ip
from tracking.instrument import TrackingFlags
from tracking.journal import (
    BadRecord,
    Journal,
    JournalUnavailable,
    decode,
    encode,
    journal_files,
)
from tracking.loader import HitLoader, backlog, load_all
from tracking.record import FACTS_TTL_SECONDS, EmailCache

PERSON = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Thunderbird/128.0"


def _hit(kind: str = "open", link_idx: int | None = None, ip: str = "198.51.100.1") -> Hit:
    return Hit(kind, utcnow(), link_idx, user_agent=PERSON, ip=ip)  # type: ignore[arg-type]


def _loader(engine: Engine, folder: Path) -> HitLoader:
    return HitLoader(engine, folder, Rules())


def _count(engine: Engine, table: object = events) -> int:
    with engine.connect() as connection:
        return connection.scalar(select(func.count()).select_from(table)) or 0  # type: ignore[arg-type]


def test_a_record_reads_back_as_the_hit_it_was() -> None:
    hit = Hit("click", utcnow(), 3, "HEAD", "Zoë's browser \u2603", "2001:db8::1", 7)
    record = encode("abc123", 42, hit)
    assert record.endswith(b"\n") and record.count(b"\n") == 1
    assert decode(record.rstrip(b"\n")) == decode(record[:-1])
    read = decode(record[:-1])
    assert (read.hit_id, read.email_id, read.hit) == ("abc123", 42, hit)


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b"00000000 [1]", "checksum"),
        (b"garbage", "checksum"),
        (encode("x", 1, Hit("open", utcnow()))[:-1].replace(b"open", b"opem"), "checksum"),
    ],
)
def test_a_damaged_record_is_refused_with_its_reason(line: bytes, reason: str) -> None:
    with pytest.raises(BadRecord, match=reason):
        decode(line)


def test_two_loaders_writing_the_same_emails_at_once_lose_nothing(
    engine: Engine, db_url: str, tmp_path: Path
) -> None:
    """As two web hosts would on PostgreSQL: each has its own journal folder and loader."""
    first, second = sent_email(engine, "a"), sent_email(engine, "b")
    other_engine = make_engine(DatabaseSettings(url=db_url))
    folders = [tmp_path / "host-1", tmp_path / "host-2"]
    for folder in folders:
        journal_hits(
            folder, [(email_id, _hit()) for email_id in (first, second) for _ in range(150)]
        )
    loaders = [
        HitLoader(e, f, Rules(), batch_hits=50)
        for e, f in zip((engine, other_engine), folders, strict=True)
    ]
    threads = [threading.Thread(target=load_all, args=(loader,)) for loader in loaders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    other_engine.dispose()
    with engine.connect() as connection:
        for email_id in (first, second):
            row = connection.execute(
                select(engagements).where(engagements.c.email_id == email_id)
            ).one()
            assert (row.opens, row.opens_raw, row.open_rate) == (300, 300, 100)
    assert _count(engine) == 600
    assert [journal_files(folder) for folder in folders] == [[], []]  # loaded, and deleted


def test_reclassification_recounts_the_engagement_row(engine: Engine) -> None:
    email_id = sent_email(engine, "c")
    record_hits(engine, [(email_id, _hit("open")), (email_id, _hit("click", 1))])
    with engine.connect() as connection:
        row = connection.execute(select(engagements)).one()
    assert (row.open_rate, row.click_rate, row.opens, row.clicks) == (100, 100, 1, 1)
    record_hits(engine, [(email_id, _hit("click", 0))])  # the honeypot
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


def test_a_stopped_journal_refuses_hits(tmp_path: Path) -> None:
    async def play() -> None:
        journal = Journal(tmp_path)
        with pytest.raises(JournalUnavailable):
            await journal.append(1, _hit())
        journal.start()
        await journal.append(1, _hit())
        await journal.stop()
        with pytest.raises(JournalUnavailable):
            await journal.append(1, _hit())

    asyncio.run(play())
    assert backlog(tmp_path).hits == 1


def test_rates_average_only_tracked_emails_and_are_human_unless_raw(engine: Engine) -> None:
    opened, machine_only, untracked, silent = (
        sent_email(engine, "h"),
        sent_email(engine, "m"),
        sent_email(engine, "u", TrackingFlags(False, False)),
        sent_email(engine, "s"),
    )
    report = record_hits(
        engine,
        [
            (opened, _hit()),
            (machine_only, Hit("open", utcnow(), user_agent="Mozilla/5.0")),
            (untracked, _hit()),  # not tracked: not recorded
        ],
    )
    assert (report.loaded, report.ignored) == (2, 1)
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
    email_id = sent_email(engine, "o")
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
        ("2001:db8:1:2:3:4:5:6", True, "2001:db8:1::"),
    ],
)
def test_an_address_is_cleaned_to_what_may_be_stored(ip: str, anonymize: bool, stored: str) -> None:
    assert (anonymize_ip(valid_ip(ip)) if anonymize else valid_ip(ip)) == stored


def test_loading_again_doubles_nothing_even_when_its_progress_is_lost(
    engine: Engine, tmp_path: Path
) -> None:
    email_id = sent_email(engine, "d")
    journal_hits(tmp_path, [(email_id, _hit()) for _ in range(10)])
    [path] = journal_files(tmp_path)
    with open(path, "rb") as held:  # as if its writer were still running: the file stays
        fcntl.flock(held, fcntl.LOCK_EX)
        assert load_all(_loader(engine, tmp_path)).loaded == 10
        assert load_all(_loader(engine, tmp_path)).loaded == 0  # from the stored progress
        with engine.begin() as connection:
            connection.execute(delete(journal_progress))
        again = load_all(_loader(engine, tmp_path))  # from the start: each hit id is known
    assert (again.loaded, again.ignored) == (0, 10)
    assert _count(engine) == 10
    with engine.connect() as connection:
        assert connection.scalar(select(engagements.c.opens)) == 10


def test_a_torn_last_record_is_cut_and_the_rest_loaded(engine: Engine, tmp_path: Path) -> None:
    email_id = sent_email(engine, "t")
    journal_hits(tmp_path, [(email_id, _hit()) for _ in range(5)])
    [path] = journal_files(tmp_path)
    torn = encode("torn", email_id, _hit())[:-20]  # its writer died half-way through it
    with path.open("ab") as file:
        file.write(torn)
    assert backlog(tmp_path).hits == 5
    report = load_all(_loader(engine, tmp_path))
    assert (report.loaded, report.set_aside, report.files_done) == (5, 0, 1)
    assert _count(engine) == 5 and not path.exists()


def test_a_damaged_record_is_set_aside_and_never_holds_the_others_back(
    engine: Engine, tmp_path: Path
) -> None:
    email_id = sent_email(engine, "s")
    journal_hits(tmp_path, [(email_id, _hit()) for _ in range(3)])
    [path] = journal_files(tmp_path)
    lines = path.read_bytes().splitlines(keepends=True)
    lines.insert(1, b"0badc0de {not a hit}\n")
    lines.insert(3, b"\x00\x00\xff\xfe\n")
    path.write_bytes(b"".join(lines))
    report = load_all(_loader(engine, tmp_path))
    assert (report.loaded, report.set_aside) == (3, 2)
    with engine.connect() as connection:
        kept = list(connection.execute(select(set_aside_hits).order_by(set_aside_hits.c.offset)))
    assert [row.reason for row in kept] == [
        "its checksum does not match: the record is damaged"
    ] * 2
    assert kept[0].record == "0badc0de {not a hit}" and kept[1].record == "\ufffd\ufffd\ufffd\ufffd"
    assert not path.exists()


def test_a_hit_the_database_refuses_is_set_aside_alone(engine: Engine) -> None:
    first, second = sent_email(engine, "good-1"), sent_email(engine, "good-2")
    unstorable = Hit("open", utcnow(), link_idx=2**70, user_agent=PERSON)  # no column holds it
    hits = [
        (email_id, Hit("open", utcnow() - timedelta(seconds=i), user_agent=PERSON, ip=ip))
        for i in range(150)
        for email_id, ip in ((first, "198.51.100.7"), (second, "203.0.113.9"))
    ]
    hits.insert(77, (first, unstorable))
    report = record_hits(engine, hits)
    assert (report.loaded, report.set_aside) == (300, 1)
    with engine.connect() as connection:
        query = select(events.c.email_id, func.count()).group_by(events.c.email_id)
        counts = {email_id: count for email_id, count in connection.execute(query)}
        [kept] = connection.execute(select(set_aside_hits))
    assert counts == {first: 150, second: 150}
    assert kept.reason.startswith("the database refused it")


def test_a_file_being_written_is_loaded_as_it_grows_and_kept(
    engine: Engine, tmp_path: Path
) -> None:
    email_id = sent_email(engine, "w")

    async def play() -> None:
        size = len(encode("0" * 17, email_id, _hit()))
        journal = Journal(tmp_path, roll_bytes=size * 15)  # rolls over in every other round
        journal.start()
        loader = _loader(engine, tmp_path)
        for round_, still_written in enumerate([1, 0, 1]):
            await asyncio.gather(*(journal.append(email_id, _hit()) for _ in range(10)))
            await asyncio.to_thread(load_all, loader)
            assert _count(engine) == 10 * (round_ + 1)
            # A file still being written stays; a finished one is gone once loaded.
            assert len(journal_files(tmp_path)) == still_written
        await journal.stop()
        assert load_all(loader).files_done == 1

    asyncio.run(play())
    assert journal_files(tmp_path) == [] and backlog(tmp_path).hits == 0


def test_the_backlog_counts_what_is_not_loaded_yet(engine: Engine, tmp_path: Path) -> None:
    email_id = sent_email(engine, "b")
    first = _hit()
    journal_hits(tmp_path, [(email_id, first)] + [(email_id, _hit()) for _ in range(49)])
    for _ in range(2):  # as web processes that came and went
        journal_hits(tmp_path, [(email_id, _hit()) for _ in range(100)])
    waiting = backlog(tmp_path)
    assert (waiting.files, waiting.hits, waiting.oldest, waiting.error) == (3, 250, first.at, None)
    loader = _loader(engine, tmp_path)
    load_all(loader)
    loader.write_state()
    assert backlog(tmp_path).hits == 0


def _load_and_die_at_commit(db_url: str, folder: str) -> None:
    """In a process of its own: the loader's first transaction is killed just before COMMIT."""
    engine = make_engine(DatabaseSettings(url=db_url))
    event.listen(engine, "commit", lambda connection: os.kill(os.getpid(), signal.SIGKILL))
    load_all(HitLoader(engine, Path(folder), Rules()))


def test_a_loader_killed_between_its_insert_and_its_commit_counts_nothing_twice(
    engine: Engine, db_url: str, tmp_path: Path
) -> None:
    email_id = sent_email(engine, "k")
    journal_hits(tmp_path, [(email_id, _hit()) for _ in range(40)])
    process = multiprocessing.get_context("spawn").Process(
        target=_load_and_die_at_commit, args=(db_url, str(tmp_path))
    )
    process.start()
    process.join(timeout=60)
    assert process.exitcode == -signal.SIGKILL
    assert _count(engine) == 0  # its inserts died with it
    assert load_all(_loader(engine, tmp_path)).loaded == 40  # the lock died with it too
    assert _count(engine) == 40
    with engine.connect() as connection:
        assert connection.scalar(select(engagements.c.opens)) == 40
