"""Send run data to MLflow from a background thread, keeping what failed for a later retry.

MLflow's own ``synchronous=False`` mode queues batches too, but its flush has no timeout and
is global to the process. Here one worker thread per run does the (synchronous) client calls,
so the training loop only enqueues, waits at most ``timeout`` seconds when flushing, and
learns which calls failed so it can send them again.

While the backend is unreachable the sender is *offline*: it keeps everything (metric points,
and the calls that carry a ``record``) and sends one probe at a time, so training never waits
on a dead server; once a probe gets through, the backlog goes out in order. What is still
unsent at the end can be written to disk (`backlog`) and sent later (`medkit_exp.send_unsent`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass, field
from typing import Any

from mlflow import MlflowClient
from mlflow.entities import Metric

log = logging.getLogger(__name__)

MAX_METRICS_PER_BATCH = 1000  # MLflow's limit for one log_batch request


@dataclass
class _Call:
    """One queued client call; ``record`` (JSON-able) says what it stores, for a retry or the spool."""

    fn: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    record: dict[str, Any] | None = None
    metrics: list[Metric] = field(default_factory=list)


class BackgroundSender:
    """Queue of MLflow calls for one run; never raises into the caller.

    Metric batches that fail are kept (up to ``max_buffered`` points, oldest dropped first) and
    sent again, ahead of newer points. Calls given a ``record`` (tags, small artifacts) are kept
    and retried the same way; calls without one are not retried. The first failure of an
    outage is logged as a warning, the following ones at debug level.
    """

    def __init__(self, client: MlflowClient, run_id: str, max_buffered: int = 100_000,
                 coalesce_points: int = 500, coalesce_seconds: float = 30.0) -> None:
        self.client = client
        self.run_id = run_id
        self.max_buffered = max_buffered
        self.unsent: list[Metric] = []
        self.unsent_calls: list[_Call] = []
        # Step metrics wait here and go out together: one store transaction for many points.
        # Even on a background thread each commit costs CPU that training needs (measured:
        # +19% epoch time on 2 cores when every step was its own commit).
        self.coalesce_points = coalesce_points
        self.coalesce_seconds = coalesce_seconds
        self._waiting: list[Metric] = []
        self._waiting_since = 0.0
        self._executor: ThreadPoolExecutor | None = ThreadPoolExecutor(1, thread_name_prefix="medkit-mlflow")
        self._pending: list[tuple[Future, _Call]] = []
        self.offline = False  # the last call failed: send one probe at a time until one gets through

    # ------------------------------------------------------------------ enqueue
    def log_metrics(self, metrics: Mapping[str, float], step: int, coalesce: bool = False) -> None:
        """Enqueue ``metrics`` at ``step``, after any points that failed earlier.

        With ``coalesce``, the points wait until enough have gathered (or enough time went by,
        or `flush` is called) and are then sent in one batch.
        """
        timestamp = int(time.time() * 1000)
        batch = [Metric(key, float(value), timestamp, step) for key, value in metrics.items()]
        if coalesce:
            if not self._waiting:
                self._waiting_since = time.monotonic()
            self._waiting.extend(batch)
            if (len(self._waiting) < self.coalesce_points
                    and time.monotonic() - self._waiting_since < self.coalesce_seconds):
                return
            batch = []
        batch, self._waiting = self._waiting + batch, []
        self.unsent.extend(batch)
        self._trim()
        self._send_backlog()

    def call(self, fn: Callable[..., Any], *args: Any, record: dict[str, Any] | None = None, **kwargs: Any) -> None:
        """Enqueue any client call (e.g. ``client.set_tag``); a failure is logged.

        With ``record`` (a JSON-able description such as ``{"tags": {...}}`` or
        ``{"text": name, "content": ...}``) a failed call is kept and sent again, like metrics.
        """
        self.unsent_calls.append(_Call(fn, args, kwargs, record))
        self._send_backlog()

    # ------------------------------------------------------------------ wait / end
    def flush(self, timeout: float | None = None) -> bool:
        """Wait up to ``timeout`` s for queued calls (not at all while offline); True when all was sent."""
        if self._waiting:
            self.log_metrics({}, step=0)
        self._reap()
        self._send_backlog()
        if self._pending and not self.offline:
            wait_futures([future for future, _ in self._pending], timeout=timeout)
            self._reap()
            self._send_backlog()  # what was held back while a probe was out
            if self._pending and not self.offline:
                wait_futures([future for future, _ in self._pending], timeout=timeout)
                self._reap()
        return self.all_sent

    def wait_for_probe(self, timeout: float) -> bool:
        """While offline, send a probe (if none is out) and wait up to ``timeout`` s for its answer;
        True when the backend answers (online)."""
        self._reap()
        self._send_backlog()
        if self.offline and self._pending:
            wait_futures([future for future, _ in self._pending], timeout=timeout, return_when="FIRST_COMPLETED")
            self._reap()
        return not self.offline

    @property
    def all_sent(self) -> bool:
        """Nothing waiting, in flight or kept for a retry."""
        return not (self._pending or self.unsent or self.unsent_calls or self._waiting)

    def close(self, timeout: float | None = None) -> int:
        """Try to send everything for up to ``timeout`` s (one last probe when offline), stop the
        worker, and return the number of metric points not sent (`backlog` still lists them).

        After closing, calls run synchronously in the caller's thread (still without raising).
        """
        if self._waiting:
            self.log_metrics({}, step=0)
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.all_sent:
            self._reap()
            self._send_backlog()
            left = None if deadline is None else deadline - time.monotonic()
            if not self._pending or (left is not None and left <= 0):
                break
            was_offline = self.offline
            wait_futures([future for future, _ in self._pending], timeout=left,
                         return_when="FIRST_COMPLETED" if was_offline else "ALL_COMPLETED")
            self._reap()
            if was_offline and self.offline:
                break  # the last probe failed too: keep the rest for later
        self._reap()
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
        return len(self.backlog()["metrics"])

    def backlog(self) -> dict[str, list[Any]]:
        """What is not sent yet, JSON-able: ``metrics`` as ``[key, value, timestamp, step]`` and
        ``calls`` as their records (calls without a record are left out)."""
        in_flight = [call for _, call in self._pending]
        metrics = [m for call in in_flight for m in call.metrics] + self.unsent + self._waiting
        calls = [c.record for c in in_flight + self.unsent_calls if c.record is not None]
        return {"metrics": [[m.key, m.value, m.timestamp, m.step] for m in metrics], "calls": calls}

    # ------------------------------------------------------------------ internals
    def _send_backlog(self) -> None:
        """Submit what is kept: all of it when online, one probe (when nothing is in flight) offline."""
        self._reap()
        if self.offline and self._pending:
            return
        while self.unsent_calls or self.unsent:
            if self.unsent:
                chunk, self.unsent = self.unsent[:MAX_METRICS_PER_BATCH], self.unsent[MAX_METRICS_PER_BATCH:]
                self._submit(_Call(self._log_batch, (chunk,), {}, metrics=chunk))
            else:
                self._submit(self.unsent_calls.pop(0))
            if self.offline:
                return

    def _log_batch(self, batch: list[Metric]) -> None:
        self.client.log_batch(self.run_id, metrics=batch, synchronous=True)

    def _submit(self, call: _Call) -> None:
        if self._executor is not None:
            try:
                future = self._executor.submit(call.fn, *call.args, **call.kwargs)
            except RuntimeError:  # interpreter shutting down
                future = _run_inline(call)
        else:
            future = _run_inline(call)
        self._pending.append((future, call))
        if future.done():
            self._reap()

    def _reap(self) -> None:
        still_pending, failed = [], []
        for future, call in self._pending:
            if not future.done():
                still_pending.append((future, call))
            elif future.cancelled() or future.exception() is not None:
                failed.append(call)
                self._report(future)
            elif self.offline:
                self.offline = False
                log.warning("MLflow logging works again (run %s); sending what was kept", self.run_id)
        self._pending = still_pending
        # Failed calls go back in front, in their order, ahead of what was queued after them.
        self.unsent = [m for call in failed for m in call.metrics] + self.unsent
        self.unsent_calls = [c for c in failed if c.record is not None and not c.metrics] + self.unsent_calls
        self._trim()

    def _trim(self) -> None:
        if len(self.unsent) > self.max_buffered:
            dropped = len(self.unsent) - self.max_buffered
            self.unsent = self.unsent[dropped:]
            log.warning("MLflow still unreachable: dropped the %d oldest unsent metric points", dropped)

    def _report(self, future: Future) -> None:
        error = "cancelled" if future.cancelled() else f"{type(future.exception()).__name__}: {future.exception()}"
        error = error.splitlines()[0][:300]
        if self.offline:
            log.debug("MLflow logging failed again: %s", error)
            return
        self.offline = True
        log.warning("MLflow logging failed (%s); training goes on and what it logs is kept to send later",
                    error)


def _run_inline(call: _Call) -> Future:
    future: Future = Future()
    try:
        future.set_result(call.fn(*call.args, **call.kwargs))
    except Exception as exc:  # recorded, reported by _reap
        log.debug("MLflow call %s failed; _reap reports it", getattr(call.fn, "__name__", call.fn), exc_info=True)
        future.set_exception(exc)
    return future
