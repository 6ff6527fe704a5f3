"""Background readers for the event streams that cannot be read at scrape time (the keepalived notify
FIFO, nginx's access log: its file once a second, or its datagrams): one daemon thread each, with the
reason it stopped."""

from __future__ import annotations

import logging
import threading

from proxytier_exporter.core import SourceError

log = logging.getLogger("proxytier_exporter")


class StreamReader:
    """Opens its source in `start()`, then calls `_read_once()` in a thread until `stop()`.

    Subclasses implement `_open`, `_read_once` (wait at most ~0.5 s, so stop() is prompt) and `_close`;
    an OSError from either ends the reader and is kept in `error` for the collector to report.
    """

    thread_name = "stream-reader"
    source = "the source"

    def __init__(self, path: str):
        self.path = path
        self.error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _open(self) -> None:
        raise NotImplementedError

    def _read_once(self) -> None:
        raise NotImplementedError

    def _close(self) -> None:
        raise NotImplementedError

    def start(self) -> None:
        try:
            self._open()
        except OSError as error:
            self._fail(f"cannot open {self.source}", error)
            return
        self._thread = threading.Thread(target=self._loop, name=self.thread_name, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        try:
            while not self._stop.is_set():
                self._read_once()
        except OSError as error:
            self._fail("read failed", error)
        finally:
            self._close()

    def _fail(self, doing: str, error: OSError) -> None:
        self.error = f"{self.path}: {doing}: {error.strerror or error}"
        log.error("%s", self.error)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def ensure_running(self) -> None:
        """Raise SourceError, with the reason, unless the stream is being read."""
        if not self.running:
            raise SourceError(self.error or f"{self.path}: {self.source} is not being read")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
