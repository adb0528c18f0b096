"""Progress bars with an ETA for memrec's long steps, on stderr: the one helper every step uses.

Bars are shown when stderr is a terminal and hidden otherwise (logs and CI stay clean). The
environment variable ``MEMREC_PROGRESS=1`` shows them anyway (e.g. ``memrec train ... 2> log``),
``MEMREC_PROGRESS=0`` hides them; :func:`switched` sets them on or off for a block of code (a
``progress`` argument such as :func:`memrec.train.train_and_evaluate`'s), and an explicit
``enabled`` wins over both. Bars are cleared when their step ends (``leave=False``) and appear
only for steps longer than ``DELAY`` seconds. They only count: no result depends on them.

Example:
    >>> with switched(False):
    ...     sum(track(range(4), total=4, desc="adding"))
    6
"""
from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from typing import Callable, Iterable, Iterator, TypeVar

from tqdm import tqdm

DELAY = 1.0  # seconds a step runs before its bar appears
REFRESH = 0.5  # seconds between redraws
_switch: list[bool | None] = [None]  # set by `switched`; None: as the environment and the terminal say

T = TypeVar("T")


def shown(explicit: bool | None = None) -> bool:
    """Whether a bar is shown: ``explicit`` if given, else :func:`switched`'s setting, else
    ``$MEMREC_PROGRESS`` (0/false/no/off or 1/true/yes/on), else whether stderr is a terminal.

    Example:
        >>> shown(True), shown(False)
        (True, False)
    """
    for choice in (explicit, _switch[-1]):
        if choice is not None:
            return bool(choice)
    env = os.environ.get("MEMREC_PROGRESS", "").strip().lower()
    if env:
        return env not in ("0", "false", "no", "off")
    return bool(getattr(sys.stderr, "isatty", lambda: False)())


@contextmanager
def switched(on: bool | None):
    """Bars opened inside the block are on (True), off (False) or as :func:`shown` decides (None)."""
    _switch.append(on)
    try:
        yield
    finally:
        _switch.pop()


def bar(total: int | None = None, desc: str = "", unit: str = "it", enabled: bool | None = None, leave: bool = False) -> tqdm:
    """A tqdm bar on stderr counting up to ``total`` (use as a context manager; ``update(n)`` as work is done)."""
    return tqdm(total=total, desc=desc, unit=unit, leave=leave, disable=not shown(enabled), file=sys.stderr,
                delay=DELAY, mininterval=REFRESH, dynamic_ncols=True)


def track(items: Iterable[T], total: int | None, desc: str, unit: str = "it", size: Callable[[T], int] | None = None,
          enabled: bool | None = None) -> Iterator[T]:
    """``items`` one by one while a bar counts them: ``size(item)`` units each (1 without ``size``), of ``total``.

    Example:
        >>> batches = [[1, 2], [3]]
        >>> [b for b in track(batches, total=3, desc="users", size=len, enabled=False)]
        [[1, 2], [3]]
    """
    with bar(total, desc, unit, enabled) as counter:
        for item in items:
            yield item
            counter.update(size(item) if size else 1)


def note(message: str, enabled: bool | None = None) -> None:
    """One line on stderr, when bars are shown, for a step that cannot count its work (one long call)."""
    if shown(enabled):
        tqdm.write(message, file=sys.stderr)
