"""Plain-text event files (DVS128 Gait release): one ``t x y p`` event per line, vectorised.

The parser never loops over lines in Python: the file's bytes are classified with numpy
(digits / separators), tokens are found from digit-run edges and their values built with one
``np.add.reduceat`` over ``digit * 10 ** place``. Each non-empty line must hold exactly four
non-negative decimal integers separated by spaces or tabs; anything else raises
:class:`~masnn.errors.DataFormatError` naming the file and the byte offset.
"""

from __future__ import annotations

import os

import numpy as np

from masnn.errors import DataFormatError
from masnn.events.schema import EVENT_DTYPE

_MAX_DIGITS = 18  # fits int64
_POW10 = 10 ** np.arange(_MAX_DIGITS, dtype=np.int64)
#: Column order of the text files.
TEXT_COLUMNS = ("t", "x", "y", "p")


def parse_event_text(data: bytes, path: str | os.PathLike[str] = "<bytes>") -> np.ndarray:
    """Parse ``t x y p`` lines from ``data`` into an ``EVENT_DTYPE`` array.

    Example:
        >>> ev = parse_event_text(b"10 1 2 1\\n15 3 4 0\\r\\n")
        >>> ev["t"].tolist(), ev["x"].tolist(), ev["y"].tolist(), ev["p"].tolist()
        ([10, 15], [1, 3], [2, 4], [1, 0])
    """
    spath = os.fspath(path)
    buf = np.frombuffer(data, np.uint8)
    if buf.size == 0:
        return np.zeros(0, EVENT_DTYPE)
    digit = (buf >= 48) & (buf <= 57)
    newline = buf == 10
    space = (buf == 32) | (buf == 9) | (buf == 13)
    bad = ~(digit | newline | space)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataFormatError(
            spath, f"unexpected byte {bytes(buf[i : i + 1])!r} (expected digits and spaces)", i
        )
    d = digit.view(np.int8)
    edges = np.diff(d, prepend=np.int8(0), append=np.int8(0))
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1)  # exclusive
    lengths = ends - starts
    if lengths.size and lengths.max() > _MAX_DIGITS:
        i = int(starts[np.argmax(lengths)])
        raise DataFormatError(spath, f"number with more than {_MAX_DIGITS} digits", i)
    # tokens per line
    line_of_token = np.cumsum(newline)[starts] if starts.size else np.zeros(0, np.int64)
    n_lines = int(newline.sum()) + 1
    per_line = np.bincount(line_of_token, minlength=n_lines)
    wrong = (per_line != 0) & (per_line != 4)
    if wrong.any():
        line = int(np.flatnonzero(wrong)[0])
        line_starts = np.concatenate(([0], np.flatnonzero(newline) + 1))
        raise DataFormatError(
            spath,
            f"line {line + 1} has {int(per_line[line])} values, expected 4 (t x y p)",
            int(line_starts[line]),
        )
    if starts.size == 0:
        return np.zeros(0, EVENT_DTYPE)
    pos = np.flatnonzero(digit)
    # place value of each digit: distance to the end of its token
    token_of_digit = np.repeat(np.arange(starts.size), lengths)
    place = ends[token_of_digit] - 1 - pos
    vals = (buf[pos].astype(np.int64) - 48) * _POW10[place]
    first_digit = np.concatenate(([0], np.cumsum(lengths)[:-1]))
    numbers = np.add.reduceat(vals, first_digit).reshape(-1, 4)
    ev = np.empty(numbers.shape[0], EVENT_DTYPE)
    ev["t"] = numbers[:, 0]
    for col, name, hi in ((1, "x", 32767), (2, "y", 32767), (3, "p", 1)):
        v = numbers[:, col]
        if v.max() > hi:
            row = int(np.argmax(v > hi))
            raise DataFormatError(
                spath,
                f"event {row}: {name}={int(v[row])} out of range [0, {hi}]",
                int(starts[4 * row + col]),
            )
        ev[name] = v
    return ev


def read_event_text(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a ``t x y p`` text event file (see :func:`parse_event_text`)."""
    spath = os.fspath(path)
    try:
        with open(spath, "rb") as f:
            data = f.read()
    except OSError as e:
        raise DataFormatError(spath, f"cannot read: {e.strerror or e}") from e
    return parse_event_text(data, spath)
