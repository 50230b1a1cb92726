"""The hit journal: every web process appends each accepted hit to an append-only file of its
own, and answers only once the hit is on disk. The loader (tracking/loader.py) takes the files
into the database behind, so a slow, locked or stopped database never loses a hit.

Group commit: the hits that arrive while one write-and-fdatasync runs go to disk together in the
next one. A record is one line, `<crc32 of the payload, 8 hex digits> <JSON payload>\\n`: JSON
never holds a raw newline, so a line is a whole record, and the checksum tells a torn or damaged
one. A file is locked (flock) by the process writing it, for as long as it writes it: a file
nobody holds is finished, and the loader may cut its torn tail and delete it once loaded.
"""

from __future__ import annotations

import asyncio
import fcntl
import itertools
import json
import logging
import os
import queue
import re
import secrets
import socket
import threading
import time
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from tracking.classify import Hit

log = logging.getLogger(__name__)

SUFFIX = ".hits"
# A file is closed and a new one started once it is this big, so loaded files can go.
ROLL_BYTES = 64 * 1024 * 1024
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class JournalUnavailable(Exception):
    """The hit could not be put on disk (the disk is full or failing, or the journal stopped)."""


class BadRecord(Exception):
    """A journal line that is not a whole, well-formed hit: the reason says why."""


@dataclass(frozen=True)
class JournalHit:
    hit_id: str
    email_id: int
    hit: Hit


def encode(hit_id: str, email_id: int, hit: Hit) -> bytes:
    """The JSON array [hit id, email id, kind, link index, time in µs since the epoch, method,
    address, user agent, viewer], written out by hand: json.dumps costs twice as much per hit."""
    payload = _FIELDS % (
        _string(hit_id),
        email_id,
        _string(hit.kind),
        _number(hit.link_idx),
        (hit.at - _EPOCH) // _MICROSECOND,
        _string(hit.method),
        _string(hit.ip),
        _string(hit.user_agent),
        _number(hit.viewer_user_id),
    )
    data = payload.encode()
    return b"%08x %b\n" % (zlib.crc32(data), data)


_FIELDS = "[%s,%d,%s,%s,%d,%s,%s,%s,%s]"
_string = json.encoder.encode_basestring_ascii


def _number(value: int | None) -> str:
    return "null" if value is None else str(int(value))


def decode(line: bytes) -> JournalHit:
    """One line, without its newline."""
    checksum, _, payload = line.partition(b" ")
    if len(checksum) != 8 or checksum != b"%08x" % zlib.crc32(payload):
        raise BadRecord("its checksum does not match: the record is damaged")
    try:
        fields = json.loads(payload)
        hit_id, email_id, kind, link_idx, at, method, ip, agent, viewer = fields
    except ValueError as exc:
        raise BadRecord(f"it is not a hit record ({exc})") from None
    if not (
        isinstance(hit_id, str)
        and 0 < len(hit_id) <= 32
        and _whole(email_id)
        and kind in ("open", "click")
        and (link_idx is None or _whole(link_idx))
        and _whole(at)
        and isinstance(method, str)
        and isinstance(ip, str)
        and isinstance(agent, str)
        and (viewer is None or _whole(viewer))
    ):
        raise BadRecord("a field of the hit has the wrong type")
    try:
        when = _EPOCH + at * _MICROSECOND
    except OverflowError:
        raise BadRecord("its time is out of range") from None
    hit = Hit(kind, when, link_idx, method, agent, ip, viewer)
    return JournalHit(hit_id, email_id, hit)


_MICROSECOND = datetime.resolution


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def journal_files(folder: Path) -> list[Path]:
    """The journal files in the folder, oldest first within each writer."""
    return sorted(folder.glob(f"*{SUFFIX}"))


def is_finished(fd: int) -> bool:
    """Whether no process writes this file any more; if so, the caller now holds its lock and
    keeps it until it closes the descriptor."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


@dataclass
class _Waiting:
    record: bytes
    future: asyncio.Future[None]


_STOP: list[_Waiting] = []


class Journal:
    """Appends hits to this process's journal file. `append` returns once the hit is on disk.

    The event loop gathers the records of one turn; a writer thread writes and syncs them while
    the next batch gathers."""

    def __init__(self, folder: Path, roll_bytes: int = ROLL_BYTES) -> None:
        self.folder = folder
        self._roll_bytes = roll_bytes
        host = re.sub(r"[^A-Za-z0-9.-]", "_", socket.gethostname())[:60]
        self._name = f"{host}-{os.getpid()}-{time.time_ns():x}"
        self._files = itertools.count(1)
        self._ids = itertools.count()
        self._id_prefix = secrets.token_hex(8)
        self._fd: int | None = None
        self._size = 0
        self._queue: queue.SimpleQueue[list[_Waiting]] = queue.SimpleQueue()
        self._gathering: list[_Waiting] = []
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.failing: str | None = None  # why the last write failed, until one succeeds
        self.hits = 0

    def start(self) -> None:
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name="mailbeacon-journal", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        """Put everything waiting on disk, then close the file (the loader may then finish it)."""
        thread, self._thread = self._thread, None  # from now on, append() refuses
        if thread is None:
            return
        self._hand_over()
        self._queue.put(_STOP)
        await asyncio.to_thread(thread.join)

    async def append(self, email_id: int, hit: Hit) -> None:
        if self._thread is None or self._loop is None:
            raise JournalUnavailable("the journal is not running")
        record = encode(f"{self._id_prefix}{next(self._ids):x}", email_id, hit)
        future = self._loop.create_future()
        if not self._gathering:
            self._loop.call_soon(self._hand_over)  # after the requests ready in this turn
        self._gathering.append(_Waiting(record, future))
        await future

    def _hand_over(self) -> None:
        if self._gathering:
            self._queue.put(self._gathering)
            self._gathering = []

    def _run(self) -> None:
        stopping = False
        while not stopping:
            batch = self._queue.get()
            stopping = batch is _STOP
            while not stopping:  # what else came meanwhile goes in the same write
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                stopping = more is _STOP
                batch = batch + more
            if batch:
                self._settle(batch, self._write(b"".join(w.record for w in batch)))
        self._close()

    def _write(self, data: bytes) -> JournalUnavailable | None:
        try:
            if self._fd is None:
                self._open()
            assert self._fd is not None
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view) :]
            os.fdatasync(self._fd)
        except OSError as exc:
            log.error("could not write tracking hits to the journal in %s: %s", self.folder, exc)
            self.failing = str(exc)
            # A half-written record may be in the file: the next hits go to a new one, and the
            # loader cuts this one's torn tail.
            self._close()
            return JournalUnavailable(str(exc))
        self.failing = None
        self._size += len(data)
        if self._size >= self._roll_bytes:
            self._close()
        return None

    def _open(self) -> None:
        """A new file, locked before it gets its name, so the loader never sees it unlocked."""
        name = f"{self._name}-{next(self._files):06d}{SUFFIX}"
        partial = self.folder / f".{name}.new"
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.rename(partial, self.folder / name)
        directory = os.open(self.folder, os.O_RDONLY)
        try:
            os.fsync(directory)  # the file's name survives a power loss too
        finally:
            os.close(directory)
        self._fd, self._size = fd, 0

    def _close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # and its lock with it
            self._fd = None

    def _settle(self, batch: list[_Waiting], outcome: JournalUnavailable | None) -> None:
        if outcome is None:
            self.hits += len(batch)
        assert self._loop is not None
        self._loop.call_soon_threadsafe(_answer, batch, outcome)


def _answer(batch: list[_Waiting], outcome: JournalUnavailable | None) -> None:
    for waiting in batch:
        if waiting.future.done():  # the client went away; the hit is journaled all the same
            continue
        if outcome is None:
            waiting.future.set_result(None)
        else:
            waiting.future.set_exception(outcome)
