"""Tracking never stops training: a failure while logging becomes a warning, in one place.

The parts of a run (`medkit_exp.tracking.run`, `.spool`, `.checkpoints`, `.inputs`) wrap each
call to the tracking backend whose failure must not reach the training loop in
`warn_on_failure`; what could not be sent is kept by the sender and the spool, not lost.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from medkit_exp.tracking.secrets import redact_text

log = logging.getLogger(__name__)


def first_line(exc: BaseException) -> str:
    """``exc`` as one redacted line of at most 300 characters (a server's answer can be a whole page)."""
    return (redact_text(str(exc)).splitlines() or [""])[0][:300]


@contextmanager
def warn_on_failure(message: str, *args: object, brief: bool = False) -> Iterator[None]:
    """Run the block; an `Exception` raised in it is logged as the warning ``message % args: error``
    and goes no further (``brief``: the error as its `first_line`). Interruptions (Ctrl-C, exits) pass."""
    try:
        yield
    except Exception as exc:  # the one place where a tracking failure becomes a warning (traceback if debugging)
        log.warning(message + ": %s", *args, first_line(exc) if brief else exc,
                    exc_info=log.isEnabledFor(logging.DEBUG))
