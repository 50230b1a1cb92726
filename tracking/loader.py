"""The hit loader: takes the journal files (tracking/journal.py) into the database in large
batches, with the classification, engagement merge and reclassification of tracking/record.py.

How far it got in each file moves in the same transaction as the hits it loaded, so a restart
neither loses nor doubles a hit; each event's unique `hit_id` is the second guard. A record that
cannot be loaded is set aside with its reason and never holds the others back. A finished file
(no process writes it any more) has its torn tail cut, and is deleted once fully loaded.

One loader at a time works on a folder: it holds the folder's `loader.lock` (flock).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sqlalchemy import Connection, Engine, delete, exc, insert, select, update

from store.clock import utcnow
from store.schema import events, journal_progress, set_aside_hits
from store.sql import among, takes_arrays
from tracking.classify import Rules
from tracking.cpu import ProcessCpu
from tracking.journal import BadRecord, JournalHit, decode, is_finished, journal_files
from tracking.record import EmailCache, PendingHit, write_hits

log = logging.getLogger(__name__)

# Hits per transaction: large, so the database's per-commit cost is shared by many.
BATCH_HITS = 2000
READ_BYTES = 1024 * 1024
STATE_FILE = "loader.json"  # what the loader last did, for /healthz and `mailbeacon status`
LOCK_FILE = "loader.lock"
# The database itself failed, not the hits: wait and try again, rather than set hits aside.
DATABASE_FAILED = (exc.OperationalError, exc.InterfaceError, exc.TimeoutError)
_MAX_SET_ASIDE_CHARS = 10_000


@dataclass
class LoadReport:
    loaded: int = 0  # stored as events
    ignored: int = 0  # not stored: already loaded, or the email is unknown or not tracked
    set_aside: int = 0
    files_done: int = 0  # finished files loaded to the end and deleted
    newest: datetime | None = None  # the time of the newest hit stored
    oldest: datetime | None = None  # and of the oldest, for the lag
    full: bool = False  # a batch was full: there is more to load right away

    def saw(self, at: datetime) -> None:
        self.newest = max(self.newest or at, at)
        self.oldest = min(self.oldest or at, at)


@dataclass(frozen=True)
class _Line:
    file: str
    offset: int
    end: int  # just past its newline
    data: bytes


@dataclass
class _File:
    path: Path
    fd: int
    finished: bool
    position: int  # how far it has been read in this pass
    size: int = 0


@dataclass
class HitLoader:
    engine: Engine
    folder: Path
    rules: Rules
    tracking_enabled: bool = True
    batch_hits: int = BATCH_HITS
    _progress: dict[str, int] | None = None
    _emails: EmailCache = field(default_factory=EmailCache)

    def load(self) -> LoadReport:
        """One batch, in one transaction: the complete records written so far, up to
        `batch_hits` of them (`full`: there may be more at once). Raises a DATABASE_FAILED
        error when the database cannot be reached; nothing is lost then."""
        report = LoadReport()
        with contextlib.ExitStack() as stack:
            files = self._open_files(stack)
            if lines := self._read(files):
                self._commit(lines, report)
                report.full = len(lines) == self.batch_hits
            self._finish(files, report)
        return report

    def _open_files(self, stack: contextlib.ExitStack) -> list[_File]:
        paths = journal_files(self.folder)
        if self._progress is None:
            self._progress = self._stored_progress([p.name for p in paths])
        files = []
        for path in paths:
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                continue
            stack.callback(os.close, fd)  # and the file's lock, if it is finished
            position = self._progress.get(path.name, 0)
            files.append(_File(path, fd, is_finished(fd), position, os.fstat(fd).st_size))
        return files

    def _stored_progress(self, names: list[str]) -> dict[str, int]:
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(journal_progress.c.file, journal_progress.c.loaded_to).where(
                    journal_progress.c.file.in_(names)
                )
            )
            return {row.file: row.loaded_to for row in rows}

    def _read(self, files: list[_File]) -> list[_Line]:
        """Up to a batch of whole records, file after file."""
        lines: list[_Line] = []
        for file in files:
            while len(lines) < self.batch_hits and file.position < file.size:
                chunk = os.pread(file.fd, READ_BYTES, file.position)
                if not chunk:
                    break
                whole = chunk.rfind(b"\n") + 1
                if whole == 0:
                    if len(chunk) == READ_BYTES:  # no record is this long: a damaged stretch
                        whole = len(chunk)
                    elif file.finished:
                        _cut_torn_tail(file)
                        break
                    else:
                        break  # the writer is half-way through a record
                for data in chunk[:whole].splitlines(keepends=True):
                    if len(lines) == self.batch_hits:
                        break
                    end = file.position + len(data)
                    lines.append(_Line(file.path.name, file.position, end, data.rstrip(b"\n")))
                    file.position = end
            if len(lines) >= self.batch_hits:
                break
        return lines

    def _commit(self, lines: list[_Line], report: LoadReport) -> None:
        """Store the lines in one transaction with the progress past them. A line the database
        refuses is found by halving, and set aside alone."""
        try:
            with self.engine.begin() as connection:
                stored = self._store(connection, lines)
        except DATABASE_FAILED:
            raise
        except Exception as error:
            if len(lines) > 1:
                half = len(lines) // 2
                self._commit(lines[:half], report)
                self._commit(lines[half:], report)
                return
            with self.engine.begin() as connection:
                _set_aside(connection, lines[0], f"the database refused it: {_first_line(error)}")
                self._move_progress(connection, lines)
            stored = LoadReport(set_aside=1)
        assert self._progress is not None
        for line in lines:
            self._progress[line.file] = line.end
        report.loaded += stored.loaded
        report.ignored += stored.ignored
        report.set_aside += stored.set_aside
        for at in (stored.newest, stored.oldest):
            if at is not None:
                report.saw(at)

    def _store(self, connection: Connection, lines: list[_Line]) -> LoadReport:
        stored = LoadReport()
        hits: list[JournalHit] = []
        for line in lines:
            try:
                hits.append(decode(line.data))
            except BadRecord as error:
                _set_aside(connection, line, str(error))
                stored.set_aside += 1
        seen = _already_loaded(connection, [h.hit_id for h in hits])
        pending = []
        for hit in hits:
            if hit.hit_id not in seen:
                seen.add(hit.hit_id)
                pending.append(PendingHit(hit.email_id, hit.hit, hit.hit_id))
        results = write_hits(
            connection, pending, self.rules, self._emails, tracking_enabled=self.tracking_enabled
        )
        for item, recorded in zip(pending, results, strict=True):
            if recorded:
                stored.loaded += 1
                stored.saw(item.hit.at)
        stored.ignored = len(hits) - stored.loaded
        self._move_progress(connection, lines)
        return stored

    def _move_progress(self, connection: Connection, lines: list[_Line]) -> None:
        ends: dict[str, int] = {}
        for line in lines:
            ends[line.file] = line.end
        now = utcnow()
        for name, end in ends.items():
            row = {"file": name, "loaded_to": end, "at": now}
            moved = connection.execute(
                update(journal_progress)
                .where(journal_progress.c.file == name)
                .values(loaded_to=end, at=now)
            ).rowcount
            if not moved:
                connection.execute(insert(journal_progress).values(row))

    def _finish(self, files: list[_File], report: LoadReport) -> None:
        """Delete the finished files that are loaded to their end."""
        assert self._progress is not None
        for file in files:
            if not file.finished or self._progress.get(file.path.name, 0) < file.size:
                continue
            file.path.unlink(missing_ok=True)
            with self.engine.begin() as connection:
                connection.execute(
                    delete(journal_progress).where(journal_progress.c.file == file.path.name)
                )
            self._progress.pop(file.path.name, None)
            report.files_done += 1

    def write_state(self, error: str | None = None) -> None:
        """What /healthz and `mailbeacon status` show without asking the database."""
        state = {
            "pid": os.getpid(),
            "at": utcnow().isoformat(),
            "loaded_to": self._progress or {},
            "error": error,
        }
        partial = self.folder / f".{STATE_FILE}.new"
        partial.write_text(json.dumps(state))
        os.replace(partial, self.folder / STATE_FILE)


def _already_loaded(connection: Connection, hit_ids: list[str]) -> set[str]:
    if not hit_ids:
        return set()
    query = select(events.c.hit_id).where(
        among(events.c.hit_id, "ids", arrays=takes_arrays(connection))
    )
    return set(connection.scalars(query, {"ids": hit_ids}))


def _set_aside(connection: Connection, line: _Line, reason: str) -> None:
    record = line.data.decode("utf-8", "replace").replace("\x00", "\ufffd")
    connection.execute(
        insert(set_aside_hits).values(
            file=line.file,
            offset=line.offset,
            reason=reason,
            record=record[:_MAX_SET_ASIDE_CHARS],
        )
    )
    log.warning("hit journal: set aside %s at %d: %s", line.file, line.offset, reason)


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:500]


def _cut_torn_tail(file: _File) -> None:
    """A finished file ends in part of a record: its writer died writing it, and never answered
    the hit. Cut it, so the file can be loaded to its end."""
    log.warning(
        "hit journal: cut a torn record of %d bytes at the end of %s",
        file.size - file.position,
        file.path.name,
    )
    os.truncate(file.path, file.position)
    file.size = file.position


@contextlib.contextmanager
def folder_lock(folder: Path, *, wait: bool = True) -> Iterator[bool]:
    """Hold the folder's loader lock for the block; yields False when `wait` is off and
    another loader holds it."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


def load_all(loader: HitLoader) -> LoadReport:
    """Load everything there is now, holding the folder's lock (waiting for it)."""
    with folder_lock(loader.folder):
        total = LoadReport()
        while True:
            report = loader.load()
            for name in ("loaded", "ignored", "set_aside", "files_done"):
                setattr(total, name, getattr(total, name) + getattr(report, name))
            if not report.full:
                return total


# How often the loader looks for new hits, and how long it waits before it tries a database
# that failed again (doubling up to the most).
POLL_SECONDS = 0.1
RETRY_SECONDS = (0.5, 5.0)
# Answers first: while its web process wants this much of a CPU (a burst of hits: one event
# loop uses one CPU at most), the loader leaves the machine to it, and the hits wait safely in
# the journal; at most YIELD_SECONDS after its last batch, it loads all the same. What it wants,
# not what it got: the time it waited for a CPU counts, or the loader's own work would make the
# web process look less busy.
YIELD_ABOVE_SERVER_CPU = 0.8
YIELD_SECONDS = 15.0


def yields(server_cpu: float, since_last_batch: float) -> bool:
    """Whether the loader should wait rather than load, its web process having wanted that
    share of a CPU since the loader last looked, that long after the loader's last batch."""
    return server_cpu >= YIELD_ABOVE_SERVER_CPU and since_last_batch < YIELD_SECONDS


def keep_loading(
    loader: HitLoader,
    stopping: Callable[[float], bool],
    loaded: Callable[[LoadReport], None] = lambda report: None,
    server: ProcessCpu | None = None,
) -> None:
    """Load until `stopping(seconds)` (which waits up to that long) says to stop, then load what
    is left. `loaded` hears of every batch that stored hits. While the database is away it
    waits and tries again. While `server`, its web process, is busy, it waits (see yields())."""
    delay = RETRY_SECONDS[0]
    failing: str | None = None
    while True:
        stop = False
        if server is not None:
            server.mark()
        try:
            report = loader.load()
        except DATABASE_FAILED as error:
            reason = _first_line(error)
            if reason != failing:
                log.error("hit journal: the database cannot be reached, retrying: %s", reason)
            failing = reason
            loader.write_state(error=reason)
            stop = stopping(delay)
            delay = min(delay * 2, RETRY_SECONDS[1])
        else:
            if failing is not None:
                log.info("hit journal: the database is back")
            failing, delay = None, RETRY_SECONDS[0]
            if report.loaded or report.set_aside or report.files_done:
                loader.write_state()
            if report.loaded:
                loaded(report)
            if not report.full:
                stop = stopping(POLL_SECONDS)
            if not stop and server is not None:
                stop = _while_busy(server, stopping)
        if stop:
            with contextlib.suppress(*DATABASE_FAILED):
                while True:  # what is left, until the server's patience ends
                    report = loader.load()
                    if report.loaded:
                        loaded(report)
                    if not report.full:
                        break
            loader.write_state(error=failing)
            return


def _while_busy(server: ProcessCpu, stopping: Callable[[float], bool]) -> bool:
    """Wait while the web process is busy (as measured since its last mark); True: stop."""
    last_batch = time.monotonic()
    while yields(server.since_mark(), time.monotonic() - last_batch):
        server.mark()
        if stopping(POLL_SECONDS):
            return True
    return False


@dataclass(frozen=True)
class Backlog:
    """The hits in the folder not loaded yet, by the loader's last word (its state file)."""

    files: int
    hits: int
    oldest: datetime | None  # when the oldest of them came
    error: str | None  # why the loader is waiting (the database is away), if it is


def backlog(folder: Path) -> Backlog:
    try:
        state = json.loads((folder / STATE_FILE).read_text())
    except (OSError, ValueError):
        state = {}
    loaded_to: dict[str, int] = state.get("loaded_to") or {}
    files = hits = 0
    oldest: datetime | None = None
    for path in journal_files(folder):
        try:
            with path.open("rb") as journal:
                journal.seek(loaded_to.get(path.name, 0))
                first = journal.readline()
                waiting = first.count(b"\n")
                while chunk := journal.read(READ_BYTES):
                    waiting += chunk.count(b"\n")
        except FileNotFoundError:  # loaded and deleted meanwhile
            continue
        if not waiting:
            continue
        files += 1
        hits += waiting
        with contextlib.suppress(BadRecord):
            at = decode(first.rstrip(b"\n")).hit.at
            oldest = min(oldest or at, at)
    return Backlog(files, hits, oldest, state.get("error"))
