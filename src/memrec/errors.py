"""Errors memrec raises for bad input: each says what was expected and where."""
from __future__ import annotations


class MemrecError(Exception):
    """Base class of every error memrec raises on purpose."""


class DataFormatError(MemrecError, ValueError):
    """A data file does not have the expected format.

    Example:
        >>> str(DataFormatError("x.inter", "expected 2 columns, got 1", line=3))
        'x.inter, line 3: expected 2 columns, got 1'
    """

    def __init__(self, path, message: str, line: int | None = None):
        self.path = str(path)
        self.line = line
        where = self.path if line is None else f"{self.path}, line {line}"
        super().__init__(f"{where}: {message}")


class NotTextError(DataFormatError):
    """A data file is not text in the expected encoding: a binary file, or text in another encoding.

    Example:
        >>> str(NotTextError("x.inter", "byte 6 (0xff) is not utf-8 text", line=2))
        'x.inter, line 2: byte 6 (0xff) is not utf-8 text'
    """


class DatasetNotFoundError(MemrecError, FileNotFoundError):
    """A data set name or path could not be resolved to files."""


class ConfigError(MemrecError, ValueError):
    """A configuration key or value is not valid."""


class UnknownUserError(MemrecError, KeyError):
    """A user id is not known to the data set or model."""

    def __str__(self) -> str:  # KeyError would quote the message
        return self.args[0]


class UnknownItemError(MemrecError, KeyError):
    """An item id is not known to the data set or model."""

    def __str__(self) -> str:
        return self.args[0]
