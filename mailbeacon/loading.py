"""The hit loader's process (tracking/loader.py). Every serving process starts one for its
host's journal folder; one at a time loads it (the folder's lock), the others stand by. It is a
process of its own, so that loading never holds the interpreter lock the web process's event
loop needs. It tells its server of every batch it stores, so the alerts are not left to polling.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import signal
import threading
from collections.abc import Callable
from datetime import datetime
from multiprocessing.connection import Connection
from pathlib import Path

from mailbeacon.settings import Settings
from store.engine import make_engine
from tracking.cpu import ProcessCpu
from tracking.loader import HitLoader, LoadReport, folder_lock, keep_loading
from tracking.settings import tracking_rules

log = logging.getLogger(__name__)

# At shutdown the loader gets this long to load what is left; the rest waits for the next start.
STOP_SECONDS = 10.0
# A loader that died is started again after this (a bug, or the machine out of memory).
RESTART_SECONDS = 1.0
STANDBY_SECONDS = 1.0
LOADER_NICENESS = 10


class LoaderProcess:
    """Starts, watches and stops the loader. `loaded` hears, on the event loop, the time of the
    newest hit of each batch stored."""

    def __init__(self, settings: Settings, loaded: Callable[[datetime], None]) -> None:
        self._settings = settings
        self._loaded = loaded
        self._context = multiprocessing.get_context("spawn")  # no threads or loop inherited
        self._process: multiprocessing.process.BaseProcess | None = None
        self._connection: Connection | None = None
        self._stopping = False

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        ours, theirs = self._context.Pipe()
        process = self._context.Process(
            target=run_loader,
            args=(self._settings, theirs),
            name="mailbeacon-loader",
            daemon=True,  # stopped with its server, whatever happens to the server
        )
        process.start()
        theirs.close()
        self._process, self._connection = process, ours
        loop.add_reader(ours.fileno(), self._hear)

    def _hear(self) -> None:
        assert self._connection is not None
        try:
            while self._connection.poll():
                self._loaded(self._connection.recv())
        except (EOFError, OSError):
            self._gone()

    def _gone(self) -> None:
        loop = asyncio.get_running_loop()
        assert self._connection is not None and self._process is not None
        loop.remove_reader(self._connection.fileno())
        self._connection.close()
        self._process.join(timeout=5)
        if not self._stopping:
            log.error(
                "the hit loader stopped (exit code %s): starting it again",
                self._process.exitcode,
            )
            loop.call_later(RESTART_SECONDS, self._restart)

    def _restart(self) -> None:
        if not self._stopping:
            self.start()

    async def stop(self) -> None:
        """Ask it to load what is left and stop; past STOP_SECONDS it is stopped."""
        self._stopping = True
        process, connection = self._process, self._connection
        if process is None or connection is None or connection.closed:
            return
        asyncio.get_running_loop().remove_reader(connection.fileno())
        with contextlib.suppress(OSError):
            connection.send("stop")
        await asyncio.to_thread(process.join, STOP_SECONDS)
        if process.is_alive():
            log.warning("the hit loader did not stop within %g s: stopped", STOP_SECONDS)
            process.terminate()
            await asyncio.to_thread(process.join, 5)
        connection.close()


def run_loader(settings: Settings, server: Connection) -> None:
    """The loader process: loads the folder while it holds its lock, else stands by; stops when
    the server says so or is gone (its end of the pipe closes, even on SIGKILL)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the server
    terminated = threading.Event()  # decides when this stops
    signal.signal(signal.SIGTERM, lambda *_: terminated.set())
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(name)s: %(message)s")
    # Behind the web process, not beside it: while requests keep the CPUs busy, hits wait
    # safely in the journal, and are loaded in the time they leave.
    os.nice(LOADER_NICENESS)

    def stopping(seconds: float) -> bool:
        try:
            return server.poll(seconds) or terminated.is_set()
        except (EOFError, OSError):
            return True

    def loaded(report: LoadReport) -> None:
        with contextlib.suppress(OSError):  # the server is gone: stopping() will tell
            server.send(report.newest)

    engine = make_engine(settings.database)
    folder = Path(settings.tracking.journal_dir)
    loader = HitLoader(
        engine,
        folder,
        tracking_rules(settings.tracking),
        tracking_enabled=settings.tracking.enabled,
    )
    try:
        while True:
            with folder_lock(folder, wait=False) as mine:
                if mine:
                    keep_loading(loader, stopping, loaded, ProcessCpu(os.getppid()))
                    return
            if stopping(STANDBY_SECONDS):
                return
    finally:
        engine.dispose()
