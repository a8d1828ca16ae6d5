"""Progress of long steps: a line on stderr every few seconds, never silence for minutes.

``Heartbeat`` is a context manager around a long step (``graft profile``,
``graft models --check``, a long simulation, the demo's profiling). The step reports what it
is doing with ``update(status)`` whenever it likes; a daemon thread writes
``"<what>: <elapsed> s, <latest status>"`` every ``every_s`` seconds while the step runs.
A step shorter than ``every_s`` prints nothing. Library code takes a ``progress`` callback;
the command line passes a heartbeat's ``update``.
"""

from __future__ import annotations

import sys
import threading
import time
from types import TracebackType
from typing import TextIO

#: Seconds between two progress lines.
EVERY_S = 5.0


class Heartbeat:
    """Writes the latest status of a long step to ``stream`` every ``every_s`` seconds."""

    def __init__(self, what: str, *, every_s: float = EVERY_S, stream: TextIO | None = None,
                 enabled: bool = True):
        if not every_s > 0:
            raise ValueError(f"every_s must be > 0, got {every_s!r}")
        self.what = what
        self.every_s = every_s
        self.stream = stream
        #: False: a silent heartbeat (another progress display is on)
        self.enabled = enabled
        self.status = ""
        self.lines = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._t0 = 0.0

    def update(self, status: str) -> None:
        """What the step is doing now (shown in the next line)."""
        self.status = status

    def line(self) -> str:
        elapsed = time.monotonic() - self._t0
        return f"{self.what}: {elapsed:.0f} s" + (f", {self.status}" if self.status else "")

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            stream = self.stream or sys.stderr
            try:
                stream.write(self.line() + "\n")
                stream.flush()
            except (OSError, ValueError):  # a closed or full stream: progress is optional
                return
            self.lines += 1

    def __enter__(self) -> Heartbeat:
        self._t0 = time.monotonic()
        if not self.enabled:
            return self
        self._thread = threading.Thread(target=self._run, name="graft-heartbeat", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
