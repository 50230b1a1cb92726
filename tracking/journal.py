"""The hit journal: every web process appends each accepted hit to an append-only file of its
own, and answers only once the hit is on disk. The loader (tracking/loader.py) takes the files
into the database behind, so a slow, locked or stopped database never loses a hit.

Group commit: the hits of one turn of the event loop are written together, and one fdatasync
puts on disk all that was written while the previous one ran. A record is one line,
`<crc32 of the payload, 8 hex digits> <JSON payload>\\n`: JSON never holds a raw newline, so a
line is a whole record, and the checksum tells a torn or damaged one. A file is locked (flock)
by the process writing it, for as long as it writes it: a file nobody holds is finished, and
the loader may cut its torn tail and delete it once loaded.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import itertools
import json
import logging
import os
import re
import secrets
import socket
import subprocess
import sys
import time
import zlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
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
        fields = json.loads(payload.decode())  # bytes would have their encoding guessed
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


_Waiting = list[asyncio.Future[None]]  # the requests of one write, answered together


@dataclass(eq=False)
class _File:
    """A journal file being written, and the requests waiting for its sync."""

    name: str
    fd: int
    written: int = 0
    retired: bool = False  # nothing more is written to it: closed once synced
    waiting: deque[tuple[int, _Waiting]] = field(default_factory=deque)  # (end, requests)


class Journal:
    """Appends hits to this process's journal file. `append` returns once the hit is on disk.

    Group commit: the event loop writes the records of one turn with one write (to the page
    cache: microseconds), and a syncer process (tracking/syncer.py) puts on disk, one fdatasync
    at a time, whatever was written while the previous one ran. Everything here runs on the
    event loop: no thread of this process waits on the disk, so none competes with the loop
    for the interpreter lock."""

    def __init__(self, folder: Path, roll_bytes: int = ROLL_BYTES) -> None:
        self.folder = folder
        self._roll_bytes = roll_bytes
        host = re.sub(r"[^A-Za-z0-9.-]", "_", socket.gethostname())[:60]
        self._name = f"{host}-{os.getpid()}-{time.time_ns():x}"
        self._files = itertools.count(1)
        self._ids = itertools.count()
        self._id_prefix = secrets.token_hex(8)
        self._file: _File | None = None  # the one being written
        self._records: list[bytes] = []  # this turn's
        self._gathering: _Waiting = []
        self._to_sync: list[_File] = []  # written past their last sync
        self._syncing: tuple[_File, int] | None = None  # the sync asked for, and up to where
        self._syncer: _Syncer | None = None
        self._running = False
        self._synced_all: asyncio.Event | None = None  # set while nothing waits for a sync
        self.failing: str | None = None  # why the last write failed, until one succeeds
        self.hits = 0

    def start(self) -> None:
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._synced_all = asyncio.Event()
        self._synced_all.set()
        self._syncer = _Syncer(self.folder, self._synced, self._syncer_died)
        self._running = True

    async def stop(self) -> None:
        """Put everything waiting on disk, then close the file (the loader may then finish it)."""
        if not self._running or self._synced_all is None:
            return
        self._running = False  # from now on, append() refuses
        self._write()
        if self._file is not None:
            self._retire(self._file)
        await self._synced_all.wait()
        syncer, self._syncer = self._syncer, None
        if syncer is not None:
            await syncer.stop()

    async def append(self, email_id: int, hit: Hit) -> None:
        if not self._running:
            raise JournalUnavailable("the journal is not running")
        future = asyncio.get_running_loop().create_future()
        if not self._gathering:
            future.get_loop().call_soon(self._write)  # after the requests ready in this turn
        self._records.append(encode(f"{self._id_prefix}{next(self._ids):x}", email_id, hit))
        self._gathering.append(future)
        await future

    def _write(self) -> None:
        """This turn's records, in one write."""
        if not self._gathering:
            return
        data, waiting = b"".join(self._records), self._gathering
        self._records, self._gathering = [], []
        try:
            file = self._file or self._open()
            view = memoryview(data)
            while view:
                view = view[os.write(file.fd, view) :]
        except OSError as exc:
            self._failed(exc, waiting)
            if self._file is not None:
                # A part of a record may be in it: the next hits go to a new file, and the
                # loader cuts this one's torn tail.
                self._retire(self._file)
            return
        file.written += len(data)
        file.waiting.append((file.written, waiting))
        if file.written >= self._roll_bytes:
            self._retire(file)
        else:
            self._sync(file)

    def _open(self) -> _File:
        """A new file, locked before it gets its name, so the loader never sees it unlocked."""
        name = f"{self._name}-{next(self._files):06d}{SUFFIX}"
        partial = self.folder / f".{name}.new"
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.rename(partial, self.folder / name)
        except OSError:
            os.close(fd)
            raise
        self._file = _File(name, fd)
        return self._file

    def _retire(self, file: _File) -> None:
        """Nothing more goes to the file: it is closed once what it holds is on disk."""
        if file is self._file:
            self._file = None
        file.retired = True
        if file.waiting:
            self._sync(file)
        else:
            self._close(file)

    def _sync(self, file: _File) -> None:
        """Have the syncer put the file on disk, after those already waiting."""
        if file not in self._to_sync:
            self._to_sync.append(file)
        self._sync_next()

    def _sync_next(self) -> None:
        assert self._synced_all is not None
        if self._syncing is not None or self._syncer is None:
            return
        if not self._to_sync:
            self._synced_all.set()
            return
        self._synced_all.clear()
        file = self._to_sync.pop(0)
        self._syncing = (file, file.written)
        self._syncer.ask(file.name, file.written)

    def _synced(self, error: str | None) -> None:
        """The syncer's answer: the requests whose records are on disk now are answered."""
        assert self._syncing is not None
        (file, written), self._syncing = self._syncing, None
        if error is None:
            self.failing = None
            while file.waiting and file.waiting[0][0] <= written:
                _, batch = file.waiting.popleft()
                self.hits += len(batch)
                _answer(batch, None)
            if file.retired and not file.waiting:
                self._close(file)
        else:
            waiting = [request for _, batch in file.waiting for request in batch]
            file.waiting.clear()
            self._failed(OSError(error), waiting)
            self._retire(file)  # the next hits go to a new file
        self._sync_next()

    def _syncer_died(self, started: float) -> None:
        """A new syncer takes over, from the sync the old one did not answer (after a second,
        if the old one ended at once)."""
        log.error("the hit journal's syncer process ended; starting another")
        self._syncer = None
        if self._syncing is not None:
            file, _ = self._syncing
            self._syncing = None
            self._to_sync.insert(0, file)
        loop = asyncio.get_running_loop()
        loop.call_later(max(0.0, started + 1.0 - loop.time()), self._restart_syncer)

    def _restart_syncer(self) -> None:
        if self._synced_all is None or self._syncer is not None:
            return
        if not self._running and self._synced_all.is_set():
            return  # stopped meanwhile with nothing left to sync
        self._syncer = _Syncer(self.folder, self._synced, self._syncer_died)
        self._sync_next()

    def _close(self, file: _File) -> None:
        if file in self._to_sync:
            self._to_sync.remove(file)
        if file.fd >= 0:
            os.close(file.fd)  # and its lock with it: the loader may finish it
            file.fd = -1

    def _failed(self, error: OSError, waiting: _Waiting) -> None:
        log.error("could not write tracking hits to the journal in %s: %s", self.folder, error)
        self.failing = str(error)
        _answer(waiting, JournalUnavailable(str(error)))


class _Syncer:
    """The syncer process (tracking/syncer.py), asked one sync at a time; its answers are read
    on the event loop, and `died` is called if it ends while running."""

    def __init__(
        self, folder: Path, synced: Callable[[str | None], None], died: Callable[[float], None]
    ) -> None:
        self._process = subprocess.Popen(
            [sys.executable, "-m", "tracking.syncer", str(folder)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            bufsize=0,
        )
        assert self._process.stdin is not None and self._process.stdout is not None
        self._requests = self._process.stdin.fileno()
        self._answers = self._process.stdout.fileno()
        os.set_blocking(self._answers, False)
        self._loop = asyncio.get_running_loop()
        self._started = self._loop.time()
        self._loop.add_reader(self._answers, self._read)
        self._synced, self._died = synced, died
        self._buffer = b""

    def ask(self, name: str, written: int) -> None:
        with contextlib.suppress(OSError):  # it has ended: its answers' end tells, and then
            os.write(self._requests, f"{name} {written}\n".encode())  # another is asked

    def _read(self) -> None:
        try:
            data = os.read(self._answers, 4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._end()
            self._process.kill()  # if it is not quite gone yet
            self._process.wait()
            self._died(self._started)
            return
        self._buffer += data
        *answers, self._buffer = self._buffer.split(b"\n")
        for answer in answers:
            _, status, *reason = answer.decode(errors="replace").split(" ", 2)
            self._synced(None if status == "ok" else " ".join(reason) or status)

    def _end(self) -> None:
        self._loop.remove_reader(self._answers)
        assert self._process.stdin is not None and self._process.stdout is not None
        self._process.stdin.close()
        self._process.stdout.close()

    async def stop(self) -> None:
        self._end()
        await asyncio.to_thread(self._process.wait)


def _answer(waiting: _Waiting, error: JournalUnavailable | None) -> None:
    for future in waiting:
        if future.done():  # the client went away; the hit is journaled all the same
            continue
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)
