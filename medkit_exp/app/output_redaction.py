"""Mask credentials in what the process prints and logs (`medkit_exp.tracking.secrets` says what).

`redact_process_output` wraps ``sys.stdout`` and ``sys.stderr`` (print, warnings, tracebacks,
error lines, progress bars) and the creation of every log record (console and log files:
Hydra's handlers keep the streams they were given before the run, so wrapping the streams alone
would miss them).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any, TextIO

from medkit_exp.tracking.secrets import redact_text


class RedactingStream:
    """A text stream that writes to ``stream`` with credentials masked; everything else is ``stream``'s."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(redact_text(text))
        return len(text)

    def writelines(self, lines) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:  # fileno, isatty, encoding, flush...
        return getattr(self._stream, name)


def _redact_record(record: logging.LogRecord) -> logging.LogRecord:
    try:
        message = record.getMessage()
    except (TypeError, ValueError, KeyError):  # a malformed record is the logging module's to report
        return record
    redacted = redact_text(message)
    if redacted != message:
        record.msg, record.args = redacted, None
    if record.exc_info and record.exc_info[0] is not None:
        trace = logging.Formatter().formatException(record.exc_info)
        redacted_trace = redact_text(trace)
        if redacted_trace != trace:
            record.exc_text = redacted_trace  # what formatters print instead of formatting exc_info again
    return record


class _RedactingRecordFactory:
    """The log record factory in place, whose records are redacted."""

    def __init__(self, factory: Callable[..., logging.LogRecord]) -> None:
        self.factory = factory

    def __call__(self, *args: Any, **kwargs: Any) -> logging.LogRecord:
        return _redact_record(self.factory(*args, **kwargs))


def redact_process_output() -> None:
    """From now on, credentials never reach this process's stdout, stderr or log records (idempotent)."""
    factory = logging.getLogRecordFactory()
    if not isinstance(factory, _RedactingRecordFactory):
        logging.setLogRecordFactory(_RedactingRecordFactory(factory))
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if stream is not None and not isinstance(stream, RedactingStream):
            setattr(sys, name, RedactingStream(stream))
