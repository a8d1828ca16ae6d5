"""The command line's streams: stdout that names itself when a write fails, and stderr
messages that never fail.

``guarded_stdout()`` wraps ``sys.stdout`` for the length of a command: a write to a closed
stdout (``>&-``), a full one (``> /dev/full``) or one closed under it raises
``StdoutError`` (a ``GraftInputError``: exit 2 and one line), while a reader that went away
(``| head``) stays a ``BrokenPipeError``. ``quiet_stdout()`` points the stdout descriptor at
``/dev/null`` after such a failure, so the interpreter's last flush does not fail again.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from typing import Any, TextIO

from graft.errors import GraftInputError


class StdoutError(GraftInputError):
    """Output could not be written to stdout."""


class GuardedStream:
    """A text stream (or None, when the descriptor was closed at start) whose failed writes
    are ``StdoutError``s naming it."""

    def __init__(self, stream: TextIO | None, name: str = "stdout"):
        self._stream = stream
        self._name = name

    def _fail(self, why: str) -> StdoutError:
        return StdoutError(f"cannot write to {self._name}: {why}")

    def write(self, text: str) -> int:
        if self._stream is None:
            raise self._fail("it is closed")
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            raise
        except (OSError, ValueError) as e:
            raise self._fail(getattr(e, "strerror", None) or str(e)) from None

    def flush(self) -> None:
        if self._stream is None:
            return
        try:
            self._stream.flush()
        except BrokenPipeError:
            raise
        except (OSError, ValueError) as e:
            raise self._fail(getattr(e, "strerror", None) or str(e)) from None

    def isatty(self) -> bool:
        return self._stream is not None and self._stream.isatty()

    def __getattr__(self, name: str) -> Any:
        if self._stream is None:
            raise AttributeError(name)
        return getattr(self._stream, name)


@contextlib.contextmanager
def guarded_stdout() -> Iterator[GuardedStream]:
    """``sys.stdout`` as a ``GuardedStream`` inside the block (restored after it)."""
    original = sys.stdout
    guarded = GuardedStream(original)
    sys.stdout = guarded  # type: ignore[assignment]
    try:
        yield guarded
    finally:
        sys.stdout = original


def quiet_stdout() -> None:
    """After stdout failed: drop what is buffered and send the rest to /dev/null (a no-op
    when stdout is not a real descriptor, e.g. captured by a test)."""
    stream = sys.stdout
    if stream is None:
        return
    try:
        fd = stream.fileno()
    except (OSError, ValueError, AttributeError):
        return
    try:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, fd)
        os.close(null)
    except OSError:
        pass


def say(message: str) -> None:
    """``message`` as one line on stderr; a closed or full stderr is ignored."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        sys.stderr.write(message + "\n")
        sys.stderr.flush()
