"""The files graft reads and writes: one place where bytes become values, and back.

``load_json(path, what)`` reads a file, or stdin for ``-``, and turns every problem into a
``GraftInputError`` naming ``what`` and the file: an unreadable path, a file larger than
``limits.INPUT_BYTES``, bytes that are not UTF-8, invalid JSON, nesting deeper than
``MAX_DEPTH``, an integer of thousands of digits. ``NaN`` and ``Infinity`` parse as floats
so that field validation names the field that holds them.

``write_text`` / ``write_json`` write to a file or stdout; ``check_output_file`` and
``check_output_dir`` refuse an output path that cannot be written (a directory, a missing
folder, no permission) before a command starts long work.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from graft import limits
from graft.errors import GraftInputError

#: Deepest nesting of lists and objects an input may have (ours nest at most 5 levels).
MAX_DEPTH = 64
STDIN = "-"


def _name(path: str) -> str:
    return "stdin" if path == STDIN else repr(str(path))


def read_bytes(path: str, what: str) -> bytes | str:
    """The contents of ``path`` (stdin for ``-``), at most ``limits.INPUT_BYTES``."""
    limit = int(limits.INPUT_BYTES.value)
    if path == STDIN and (sys.stdin is None or sys.stdin.closed):
        raise GraftInputError(f"cannot read {what} from stdin: it is closed")
    try:
        if path == STDIN:
            stream = getattr(sys.stdin, "buffer", None) or sys.stdin
            data = stream.read(limit + 1)
        else:
            with open(path, "rb") as fh:
                data = fh.read(limit + 1)
    except OSError as e:
        raise GraftInputError(f"cannot read {what} {_name(path)}: {e.strerror or e}") from None
    except ValueError as e:  # a stream closed under us
        raise GraftInputError(f"cannot read {what} {_name(path)}: {e}") from None
    if len(data) > limit:
        raise limits.INPUT_BYTES.exceeded(f"{what} {_name(path)} is larger than the bound "
                                          f"of {limit} bytes")
    return data


def read_text(path: str, what: str) -> str:
    """``path`` (stdin for ``-``) as UTF-8 text (a byte-order mark is dropped)."""
    data = read_bytes(path, what)
    if isinstance(data, str):
        return data
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise GraftInputError(f"{what} {_name(path)} is not UTF-8 text: byte {e.start} is "
                              f"{data[e.start]:#04x}") from None


def _constant(name: str) -> float:
    return float(name.replace("Infinity", "inf"))


def parse_json(text: str, what: str, source: str = "") -> Any:
    """``text`` as a JSON value, or a GraftInputError naming ``what`` and ``source``."""
    where = f"{what} {source}".strip()
    try:
        value = json.loads(text, parse_constant=_constant)
    except RecursionError:
        raise GraftInputError(f"{where} nests lists or objects deeper than {MAX_DEPTH} "
                              "levels") from None
    except json.JSONDecodeError as e:
        raise GraftInputError(f"{where} is not valid JSON: {e.msg} at line {e.lineno} "
                              f"column {e.colno}") from None
    except ValueError:  # an integer beyond Python's digit limit
        raise GraftInputError(f"{where} holds a number with more than "
                              f"{sys.get_int_max_str_digits()} digits") from None
    if depth(value) > MAX_DEPTH:
        raise GraftInputError(f"{where} nests lists or objects deeper than {MAX_DEPTH} "
                              "levels")
    return value


def depth(value: Any) -> int:
    """How deeply lists and objects nest in ``value`` (0 for a scalar); iterative."""
    deepest = 0
    stack = [(value, 0)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, dict):
            v = list(v.values())
        if isinstance(v, list):
            d += 1
            deepest = max(deepest, d)
            if d > MAX_DEPTH:
                return d
            stack.extend((x, d) for x in v if isinstance(x, (list, dict)))
    return deepest


def load_json(path: str, what: str) -> Any:
    """Read and parse a JSON file (``-`` for stdin); ``what`` names it in any error."""
    return parse_json(read_text(path, what), what, _name(path))


# --- writing ---------------------------------------------------------------------------------
def check_output_file(path: str | None, what: str = "output") -> None:
    """Refuse, before any work, an output file that cannot be written: a directory, in a
    folder that does not exist, or without permission (``None``/``-``: stdout)."""
    if path is None or path == STDIN:
        return
    if os.path.isdir(path):
        raise GraftInputError(f"cannot write {what} {path!r}: it is a directory")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise GraftInputError(f"cannot write {what} {path!r}: folder {folder!r} does not "
                              "exist")
    target = path if os.path.exists(path) else folder
    if not os.access(target, os.W_OK):
        raise GraftInputError(f"cannot write {what} {path!r}: permission denied")


def check_output_dir(path: str, what: str = "output folder") -> None:
    """Refuse, before any work, an output folder that cannot be made or written: a file in
    the way, or no permission where it would be made (missing parents are made)."""
    probe = os.path.abspath(path)
    while not os.path.exists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    if not os.path.isdir(probe):
        raise GraftInputError(f"cannot create {what} {path!r}: {probe!r} is not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise GraftInputError(f"cannot create {what} {path!r}: permission denied in "
                              f"{probe!r}")


def write_text(text: str, path: str | None) -> None:
    """``text`` (a newline added) to ``path``, or to stdout for ``None``/``-``."""
    if path is None or path == STDIN:
        print(text)
        return
    try:
        with open(path, "w") as fh:
            fh.write(text + "\n")
    except OSError as e:
        raise GraftInputError(f"cannot write {path!r}: {e.strerror or e}") from None


def write_json(data: Any, path: str | None) -> None:
    write_text(json.dumps(data, indent=1), path)
