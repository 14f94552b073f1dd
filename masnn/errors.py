"""Exception types of masnn.

Library code raises the built-in ``ValueError`` / ``TypeError`` / ``KeyError`` for bad
arguments (with the allowed values in the message). Errors about user *data* (files on disk)
use the types below, which always name the file and, where it applies, the byte offset.
"""

from __future__ import annotations

import os


class MasnnError(Exception):
    """Base class of masnn's own exceptions."""


class DataFormatError(MasnnError, ValueError):
    """A data file is malformed. The message names the file and, if known, the byte offset.

    Attributes:
        path: the offending file.
        offset: byte offset of the problem, or ``None`` when it is not positional.
    """

    def __init__(self, path: str | os.PathLike[str], message: str, offset: int | None = None):
        self.path = os.fspath(path)
        self.offset = offset
        where = f"{self.path}" + (f" @ byte {offset}" if offset is not None else "")
        super().__init__(f"{where}: {message}")
