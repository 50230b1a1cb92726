"""A TCP forwarder on loopback that can be stopped as a database server goes away: `stop()`
refuses new connections and cuts the open ones, `start()` listens again on the same port."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from types import TracebackType


class TcpProxy:
    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.port = 0  # chosen at the first start, kept after
        self._held: socket.socket | None = None  # the port, while stopped
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._accepting: threading.Thread | None = None

    def start(self) -> None:
        listener, self._held = self._held or self._bound(), None
        listener.listen()
        listener.settimeout(0.05)  # how often the accepting thread looks whether to stop
        self._stopping = threading.Event()
        self._accepting = threading.Thread(
            target=self._accept, args=(listener, self._stopping), daemon=True
        )
        self._accepting.start()

    def stop(self) -> None:
        """No one can connect any more, and every open connection is cut."""
        if self._accepting is not None:
            self._stopping.set()
            self._accepting.join()  # it closes the listening socket
            self._accepting = None
            # The port stays bound, not listening: connecting is refused, as with a stopped
            # server, and no other socket can take the port meanwhile.
            self._held = self._bound()
        with self._lock:
            connections = list(self._open)
        self._cut(*connections)

    @contextlib.contextmanager
    def stopped(self) -> Iterator[None]:
        self.stop()
        try:
            yield
        finally:
            self.start()

    def __enter__(self) -> TcpProxy:
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
        if self._held is not None:
            self._held.close()

    def _bound(self) -> socket.socket:
        bound = socket.socket()
        bound.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        bound.bind(("127.0.0.1", self.port))
        self.port = bound.getsockname()[1]
        return bound

    def _accept(self, listener: socket.socket, stopping: threading.Event) -> None:
        with listener:
            while not stopping.is_set():
                try:
                    client, _ = listener.accept()
                except TimeoutError:
                    continue
                try:
                    upstream = socket.create_connection(self.upstream, timeout=5)
                except OSError:
                    client.close()
                    continue
                upstream.settimeout(None)
                with self._lock:
                    self._open |= {client, upstream}
                for source, target in ((client, upstream), (upstream, client)):
                    threading.Thread(target=self._pump, args=(source, target), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                target.sendall(data)
        except OSError:  # cut, by stop() or by the other direction's end
            pass
        self._cut(source, target)

    def _cut(self, *ends: socket.socket) -> None:
        with self._lock:
            self._open.difference_update(ends)
        for end in ends:
            # shutdown() first: it wakes a thread blocked in recv() on it, which close() may not.
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)
            end.close()
